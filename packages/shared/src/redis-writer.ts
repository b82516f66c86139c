import net from "node:net";
import tls from "node:tls";
import { redactUrl } from "./config.ts";
import type { Logger } from "./logger.ts";

/**
 * A Redis connection for the byte path's hot writes (input publishes on API
 * nodes, output appends on workers) that never waits for an answer: it runs
 * with CLIENT REPLY OFF, so Redis sends nothing back and the writing process
 * is not woken once more per keystroke to read a reply it has no use for.
 * On a 2-core machine that extra wake-up of the API and the worker competes
 * with the echo itself (docs/benchmark.md).
 *
 * The one exception: after a reconnect, a needsSubscriber publish (a
 * keystroke) asks for its receiver count, per channel until one is heard
 * (see SendOptions), so input typed across a Redis restart is not published
 * to a channel whose subscriber has not come back yet.
 *
 * Commands on one connection run in order, so everything sent here stays in
 * order. `barrier()` asks for one answer (CLIENT REPLY ON, PING, CLIENT REPLY
 * OFF) and resolves once Redis has run everything sent before it: a worker
 * uses it before announcing a session's end on its other connection.
 *
 * A transaction (MULTI ... EXEC) goes out in one write: its commands run
 * together or not at all, and nothing else on this connection runs between
 * them. Without replies errors are silent: commands sent here must not be
 * able to fail for any reason but a lost connection (a runtime error inside a
 * transaction, such as an XADD id that is already in the stream, does not stop
 * the transaction's other commands).
 */
export interface RedisWriter {
  /** Connected, handshake done: commands sent now reach Redis in order. */
  readonly ready: boolean;
  /** Bytes handed to the socket and not yet written out (a slow or stuck Redis). */
  readonly backlog: number;
  /** What Redis answered when it last refused the connection's set-up (WRONGPASS, NOPERM…); null once ready. */
  readonly refusal: string | null;
  /**
   * Sends one command. While (re)connecting, commands wait (at most `queueBytes`,
   * for at most `queueMs`: keystrokes typed into a long outage must not run
   * minutes later); beyond that, or after close, they are dropped (returns false).
   */
  send(args: Command, o?: SendOptions): boolean;
  /** MULTI, `cmds`, EXEC, as one unit: queued, sent or dropped together (see `send`). */
  transaction(cmds: readonly Command[]): boolean;
  /**
   * Resolves once Redis has run every command sent before; rejects if the connection is lost first.
   * On a cluster, `key` limits it to the commands of that key's slot (one shard); without, every primary.
   */
  barrier(key?: string): Promise<void>;
  /** A Redis Cluster writer: per-session channels take SPUBLISH (sharded pub/sub), not PUBLISH. */
  readonly sharded: boolean;
  /**
   * Called after every (re)connect, once commands flow again. On a cluster, per primary, with
   * `affects` telling which keys that primary serves (only their sessions need re-seeding).
   * Returns an unsubscribe function.
   */
  onReady(l: (affects?: (key: string) => boolean) => void): () => void;
  /** Called when the socket's backlog has been written out. */
  onDrain(l: () => void): () => void;
  close(): Promise<void>;
}

export interface SendOptions {
  /**
   * A PUBLISH that must reach a subscriber (a session's input: the worker listens). Where the
   * subscriber may not be there yet, one that reached nobody is sent again, in order, until one
   * hears it or it is as old as the queue limit: on a cluster always (a slot that moved leaves the
   * channel without its subscriber until it follows); on a single node after a reconnect (Redis
   * restarted: this writer may be back before the worker's subscriber), for each channel until it is
   * heard once — the rest of the time this writer runs without replies and sends once.
   */
  needsSubscriber?: boolean;
}

/** What a writer did about publishes nobody heard (send's needsSubscriber), for tests and the benchmark. */
export interface UnheardStats {
  /** Publishes sent again because no subscriber heard them. */
  unheard: number;
  /** ...and those given up unheard at the queue limit. */
  unheardDropped: number;
}

export interface RedisWriterOptions {
  url: string;
  /** CLIENT SETNAME, so the connection shows in CLIENT LIST. */
  name: string;
  log: Logger;
  /** Commands kept while (re)connecting (default 4 MiB)... */
  queueBytes?: number;
  /** ...and for how long (default 3 s). */
  queueMs?: number;
  /** Milliseconds clock for queue ages (default performance.now); tests pass their own to age the queue. */
  now?: () => number;
  /** After a reconnect, how long a channel's first needsSubscriber publish is sent with a reply asked for (default 10 s). */
  confirmWindowMs?: number;
}

const CRLF = "\r\n";

export type Command = readonly (string | Buffer)[];

/** Buffers at least this long are handed to the socket as they are (writev), not copied. */
const BY_REFERENCE = 8 * 1024;

/**
 * RESP encoding of commands: the small parts copied into one buffer, large
 * buffer arguments (a batch of terminal output) passed by reference, so a
 * chunk sent in two commands of a transaction is never copied in this process.
 */
export function encodeCommands(cmds: readonly Command[]): Buffer[] {
  const out: Buffer[] = [];
  let small: (string | Buffer)[] = [];
  let smallLen = 0;
  const add = (p: string | Buffer) => {
    small.push(p);
    smallLen += p.length;
  };
  const flush = () => {
    if (smallLen === 0) return;
    const b = Buffer.allocUnsafe(smallLen);
    let at = 0;
    for (const p of small) at += typeof p === "string" ? b.write(p, at, "latin1") : p.copy(b, at);
    out.push(b);
    small = [];
    smallLen = 0;
  };
  for (const args of cmds) {
    add(`*${args.length}${CRLF}`);
    for (const a of args) {
      const b = typeof a === "string" ? Buffer.from(a) : a;
      add(`$${b.length}${CRLF}`);
      if (b.length >= BY_REFERENCE) {
        flush();
        out.push(b);
      } else {
        add(b);
      }
      add(CRLF);
    }
  }
  flush();
  return out;
}

/** RESP encoding of one command as one buffer. */
export function encodeCommand(args: Command): Buffer {
  const parts = encodeCommands([args]);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/** Several buffers in one system call (writev) rather than one per part. */
function writeParts(s: net.Socket, parts: readonly Buffer[]): void {
  if (parts.length === 1) {
    s.write(parts[0]!);
    return;
  }
  s.cork();
  for (const p of parts) s.write(p);
  s.uncork();
}

const sizeOf = (parts: readonly Buffer[]) => parts.reduce((n, p) => n + p.length, 0);

const REPLY_ON = encodeCommand(["CLIENT", "REPLY", "ON"]);
const REPLY_OFF = encodeCommand(["CLIENT", "REPLY", "OFF"]);
/** How soon a publish that reached no subscriber is sent again (here and on a cluster). */
export const UNHEARD_RETRY_MS = 50;

/** A command to be written; `channel` for a needsSubscriber publish. */
interface Pending {
  parts: Buffer[];
  /** When it started to wait (set only if it does: no clock read per keystroke). */
  at: number;
  channel?: string;
}

/**
 * A channel whose publishes wait for its first to be heard (after a reconnect): the first goes out
 * with a reply asked for, again every UNHEARD_RETRY_MS while nobody hears it; the rest follow once it is.
 */
interface Line {
  items: Pending[];
  inflight: boolean;
  timer: NodeJS.Timeout | null;
}

/** What the writer waits to read after its set-up: a barrier's PONG, or a confirmed publish's count. */
type Expect = { barrier: { resolve(): void; reject(err: Error): void } } | { channel: string };

/**
 * Reads the simple replies of the handshake, of barriers and of confirmed publishes: +status, -error,
 * :integer and $bulk (no arrays are ever asked for). Returns the replies
 * complete in `buf` and how many bytes they used.
 */
export function parseReplies(buf: Buffer): { replies: { error: boolean; value: string }[]; used: number } {
  const replies: { error: boolean; value: string }[] = [];
  let at = 0;
  for (;;) {
    const eol = buf.indexOf(CRLF, at, "latin1");
    if (eol < 0) break;
    const type = String.fromCharCode(buf[at]!);
    const line = buf.toString("utf8", at + 1, eol);
    if (type === "$") {
      const n = Number(line);
      if (n < 0) {
        replies.push({ error: false, value: "" });
        at = eol + 2;
        continue;
      }
      if (buf.length < eol + 2 + n + 2) break;
      replies.push({ error: false, value: buf.toString("utf8", eol + 2, eol + 2 + n) });
      at = eol + 2 + n + 2;
      continue;
    }
    if (type !== "+" && type !== "-" && type !== ":") throw new Error(`unexpected reply type ${JSON.stringify(type)}`);
    replies.push({ error: type === "-", value: line });
    at = eol + 2;
  }
  return { replies, used: at };
}

export function createRedisWriter(o: RedisWriterOptions): RedisWriter & { stats: UnheardStats } {
  const u = new URL(o.url);
  const host = u.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1";
  const port = Number(u.port || 6379);
  const db = Number(u.pathname.replace(/^\//, "") || 0);
  const username = decodeURIComponent(u.username);
  const password = decodeURIComponent(u.password);
  const maxQueue = o.queueBytes ?? 4 * 1024 * 1024;
  const maxAge = o.queueMs ?? 3000;
  const now = o.now ?? (() => performance.now());

  let socket: net.Socket | null = null;
  let ready = false;
  let refusal: string | null = null;
  let closed = false;
  let attempt = 0;
  let retryTimer: NodeJS.Timeout | null = null;
  const confirmWindow = o.confirmWindowMs ?? 10_000;
  let queue: Pending[] = [];
  let queued = 0;
  /** Answers asked for on the current socket, oldest first (each after the +OK of its CLIENT REPLY ON). */
  let expects: Expect[] = [];
  /** Until when a channel not heard since the last reconnect gets its publishes confirmed. */
  let confirmUntil = Number.NEGATIVE_INFINITY;
  let everReady = false;
  /** Channels heard since the last reconnect: their publishes go out without replies again. */
  const heard = new Set<string>();
  const lines = new Map<string, Line>();
  let heldBytes = 0;
  const stats: UnheardStats = { unheard: 0, unheardDropped: 0 };
  const readyListeners = new Set<(affects?: (key: string) => boolean) => void>();
  const drainListeners = new Set<() => void>();

  const handshake = (): Buffer[] => {
    const cmds: (readonly string[])[] = [];
    if (password) cmds.push(username ? ["AUTH", username, password] : ["AUTH", password]);
    if (db) cmds.push(["SELECT", String(db)]);
    cmds.push(["CLIENT", "SETNAME", o.name]);
    cmds.push(["PING"]);
    return cmds.map(encodeCommand);
  };

  function connect(): void {
    if (closed) return;
    const s =
      u.protocol === "rediss:" ? tls.connect({ host, port, servername: host }) : net.connect({ host, port });
    socket = s;
    s.setNoDelay(true);
    let pending: Buffer = Buffer.alloc(0);
    let expected = 0;
    s.once(u.protocol === "rediss:" ? "secureConnect" : "connect", () => {
      const cmds = handshake();
      expected = cmds.length;
      for (const c of cmds) s.write(c);
    });
    s.on("data", (chunk: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      let parsed: ReturnType<typeof parseReplies>;
      try {
        parsed = parseReplies(pending);
      } catch (err) {
        o.log.warn({ err, conn: o.name }, "redis writer: unreadable reply");
        s.destroy();
        return;
      }
      pending = pending.subarray(parsed.used);
      for (const r of parsed.replies) {
        if (!ready) {
          if (r.error) {
            // Wrong credentials do not fix themselves: say so once, loudly, then keep retrying quietly.
            if (refusal !== r.value) o.log.error({ conn: o.name, url: redactUrl(o.url), error: r.value }, "redis writer: Redis refused the connection set-up (credentials or ACL in REDIS_URL?)");
            refusal = r.value;
            s.destroy();
            return;
          }
          if (--expected === 0) becomeReady(s);
        } else if (r.error || r.value !== "OK") {
          // (+OK is CLIENT REPLY ON's answer before each asked-for reply.)
          const e = expects.shift();
          if (!e) continue;
          if ("barrier" in e) e.barrier.resolve();
          else onPublishReply(e.channel, r.error ? r.value : null, Number(r.value));
        }
      }
    });
    s.on("drain", () => {
      for (const l of drainListeners) l();
    });
    s.on("error", (err) => o.log.debug({ err, conn: o.name }, "redis writer: connection error"));
    s.on("close", () => {
      if (socket === s) socket = null;
      const was = ready;
      ready = false;
      const lost = expects;
      expects = [];
      for (const e of lost) if ("barrier" in e) e.barrier.reject(new Error("redis connection lost"));
      // A confirmed publish in flight may or may not have run: it stays first in its line and goes
      // again after the reconnect (at most a keystroke seen twice, as on a cluster).
      for (const line of lines.values()) line.inflight = false;
      if (was) o.log.warn({ conn: o.name }, "redis writer: connection lost, reconnecting");
      if (closed) return;
      const delay = Math.min(50 * ++attempt, 1000);
      retryTimer = setTimeout(connect, delay);
      retryTimer.unref();
    });
  }

  function becomeReady(s: net.Socket): void {
    s.write(REPLY_OFF);
    ready = true;
    refusal = null;
    attempt = 0;
    if (everReady) {
      // Back after a lost connection (Redis restarted?): a session's subscriber may not be back
      // yet, and a publish nobody hears is gone. Until each channel is heard once, ask.
      confirmUntil = now() + confirmWindow;
      heard.clear();
    }
    everReady = true;
    for (const [channel, line] of lines) kick(channel, line);
    const q = queue;
    queue = [];
    queued = 0;
    const oldest = now() - maxAge;
    let dropped = 0;
    for (const c of q) {
      if (c.at < oldest) dropped++;
      else route(s, c);
    }
    if (dropped) o.log.warn({ conn: o.name, dropped }, "redis writer: dropped commands older than the queue limit");
    for (const l of readyListeners) l();
  }

  function submit(p: Pending): boolean {
    if (closed) return false;
    if (ready && socket) return route(socket, p);
    const bytes = sizeOf(p.parts);
    if (queued + bytes > maxQueue) return false;
    p.at = now();
    queue.push(p);
    queued += bytes;
    return true;
  }

  /** Written now, or, for a publish on a channel that must be heard first, into its line. */
  function route(s: net.Socket, p: Pending): boolean {
    const ch = p.channel;
    if (ch === undefined) {
      writeParts(s, p.parts);
      return true;
    }
    let line = lines.get(ch);
    if (!line) {
      // (No clock read per keystroke outside a window.)
      if (confirmUntil !== Number.NEGATIVE_INFINITY && now() >= confirmUntil) {
        confirmUntil = Number.NEGATIVE_INFINITY;
        heard.clear();
      }
      if (confirmUntil === Number.NEGATIVE_INFINITY || heard.has(ch)) {
        writeParts(s, p.parts);
        return true;
      }
      line = { items: [], inflight: false, timer: null };
      lines.set(ch, line);
    }
    const bytes = sizeOf(p.parts);
    if (heldBytes + bytes > maxQueue) return false;
    if (p.at === 0) p.at = now();
    line.items.push(p);
    heldBytes += bytes;
    kick(ch, line);
    return true;
  }

  /** The first of a line's publishes, with a reply asked for (unless one is awaited or due later). */
  function kick(channel: string, line: Line): void {
    if (line.inflight || line.timer || !ready || !socket) return;
    const oldest = now() - maxAge;
    while (line.items[0] && line.items[0].at < oldest) {
      unhold(line.items.shift()!);
      stats.unheardDropped++;
      o.log.warn({ conn: o.name, channel }, "redis writer: a publish no subscriber heard, dropped after the queue limit");
    }
    const first = line.items[0];
    if (!first) {
      lines.delete(channel);
      return;
    }
    line.inflight = true;
    expects.push({ channel });
    writeParts(socket, [REPLY_ON, ...first.parts, REPLY_OFF]);
  }

  function unhold(p: Pending): void {
    heldBytes -= sizeOf(p.parts);
  }

  function onPublishReply(channel: string, error: string | null, receivers: number): void {
    const line = lines.get(channel);
    if (!line) return;
    line.inflight = false;
    if (error === null && receivers === 0) {
      stats.unheard++;
      line.timer = setTimeout(() => {
        line.timer = null;
        kick(channel, line);
      }, UNHEARD_RETRY_MS);
      line.timer.unref();
      return;
    }
    // Heard (or refused, which no retry mends): the rest of the line goes out as usual.
    if (error !== null) o.log.warn({ conn: o.name, channel, error }, "redis writer: Redis refused a publish");
    lines.delete(channel);
    heard.add(channel);
    unhold(line.items.shift()!);
    for (const p of line.items) {
      unhold(p);
      if (socket) writeParts(socket, p.parts);
    }
  }

  connect();

  return {
    stats,
    sharded: false,
    get ready() {
      return ready;
    },
    get backlog() {
      return socket?.writableLength ?? 0;
    },
    get refusal() {
      return refusal;
    },
    send(args, so) {
      const p: Pending = { parts: encodeCommands([args]), at: 0 };
      if (so?.needsSubscriber && String(args[0]).toUpperCase() === "PUBLISH" && args[1] !== undefined) p.channel = args[1].toString("latin1");
      return submit(p);
    },
    transaction(cmds) {
      return submit({ parts: encodeCommands([["MULTI"], ...cmds, ["EXEC"]]), at: 0 });
    },
    barrier() {
      if (!ready || !socket) return Promise.reject(new Error("redis writer not connected"));
      const s = socket;
      return new Promise<void>((resolve, reject) => {
        expects.push({ barrier: { resolve, reject } });
        s.write(Buffer.concat([REPLY_ON, encodeCommand(["PING"]), REPLY_OFF]));
      });
    },
    onReady(l) {
      readyListeners.add(l);
      return () => readyListeners.delete(l);
    },
    onDrain(l) {
      drainListeners.add(l);
      return () => drainListeners.delete(l);
    },
    async close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      for (const line of lines.values()) if (line.timer) clearTimeout(line.timer);
      lines.clear();
      const s = socket;
      if (!s) return;
      await new Promise<void>((resolve) => {
        s.once("close", () => resolve());
        s.end();
        setTimeout(() => s.destroy(), 1000).unref();
      });
    },
  };
}
