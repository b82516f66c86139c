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
   * A PUBLISH that must reach a subscriber (a session's input: the worker listens). On a cluster, where
   * a slot that moved leaves the channel without its subscriber until it follows, one that reached
   * nobody is sent again, in order, until one hears it or it is as old as the queue limit. The
   * single-node writer runs without replies and cannot tell: it sends once.
   */
  needsSubscriber?: boolean;
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

/**
 * Reads the simple replies of the handshake and of barriers: +status, -error,
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

export function createRedisWriter(o: RedisWriterOptions): RedisWriter {
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
  let queue: { parts: Buffer[]; at: number }[] = [];
  let queued = 0;
  /** Barriers sent on the current socket, oldest first; each resolves on its PONG. */
  let waiting: { resolve(): void; reject(err: Error): void }[] = [];
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
        } else if (r.value === "PONG") {
          waiting.shift()?.resolve();
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
      const lost = waiting;
      waiting = [];
      for (const w of lost) w.reject(new Error("redis connection lost"));
      if (was) o.log.warn({ conn: o.name }, "redis writer: connection lost, reconnecting");
      if (closed) return;
      const delay = Math.min(50 * ++attempt, 1000);
      retryTimer = setTimeout(connect, delay);
      retryTimer.unref();
    });
  }

  function becomeReady(s: net.Socket): void {
    s.write(encodeCommand(["CLIENT", "REPLY", "OFF"]));
    ready = true;
    refusal = null;
    attempt = 0;
    const q = queue;
    queue = [];
    queued = 0;
    const oldest = now() - maxAge;
    let dropped = 0;
    for (const c of q) {
      if (c.at < oldest) dropped++;
      else writeParts(s, c.parts);
    }
    if (dropped) o.log.warn({ conn: o.name, dropped }, "redis writer: dropped commands older than the queue limit");
    for (const l of readyListeners) l();
  }

  function submit(parts: Buffer[]): boolean {
    if (closed) return false;
    if (ready && socket) {
      writeParts(socket, parts);
      return true;
    }
    const bytes = sizeOf(parts);
    if (queued + bytes > maxQueue) return false;
    queue.push({ parts, at: now() });
    queued += bytes;
    return true;
  }

  connect();

  return {
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
    send(args) {
      return submit(encodeCommands([args]));
    },
    transaction(cmds) {
      return submit(encodeCommands([["MULTI"], ...cmds, ["EXEC"]]));
    },
    barrier() {
      if (!ready || !socket) return Promise.reject(new Error("redis writer not connected"));
      const s = socket;
      return new Promise<void>((resolve, reject) => {
        waiting.push({ resolve, reject });
        s.write(Buffer.concat([encodeCommand(["CLIENT", "REPLY", "ON"]), encodeCommand(["PING"]), encodeCommand(["CLIENT", "REPLY", "OFF"])]));
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
