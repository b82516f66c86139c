import { isUtf8 } from "node:buffer";
import type { WebSocket } from "ws";
import {
  CLOSE,
  clientMessage,
  decodeOut,
  encodeControl,
  logged,
  readOutput,
  readSessionMeta,
  type ByteRedis,
  type ControlMessage,
  type ErrorCode,
  type Hub,
  type Logger,
  type RedisWriter,
  type SessionEnd,
  type SessionKeys,
  type SessionMeta,
} from "@molecule/shared";
import { closeFor } from "./end-mapping.ts";
import { FrameWriter, type Mode } from "./frames.ts";
import { InputGate } from "./input-gate.ts";
import { InputThrottle } from "./input-throttle.ts";
import type { AttachedEntry, Presence, Role } from "./presence.ts";
import { ReaderWindow } from "./reader-window.ts";
import { SentInput } from "./sent-input.ts";
import type { SessionControl } from "./session-control.ts";

export type { Mode } from "./frames.ts";

export interface BridgeOptions {
  sessionId: string;
  workspaceId: string;
  keys: SessionKeys;
  mode: Mode;
  /** First output offset this client needs (0 for a new session). */
  from: number;
  cols: number;
  rows: number;
  /** New session: wait for the worker's `ready` before `hello`. Re-attach: the worker already runs it. */
  isNew: boolean;
  workerId: string | null;
  /** The session had already ended before this attach (replay what is left, then end). */
  endedAlready: SessionEnd | null;
  /**
   * controller: input, resizes and acks reach the shell, a close frame ends it (v1 as it always was).
   * viewer (mode=view): output only, with its own window; input and resizes are refused (read_only).
   */
  role: Role;
  /** How this client appears in presence (label, address, since). */
  who: Omit<AttachedEntry, "role">;
  /**
   * The client counts its input (protocol `input_from`): where this connection's input starts in
   * the session's; the worker drops what the shell already has and its acks reach the client.
   */
  inputFrom?: number | null;
  /** Called once when this connection is done (the viewer audit's end). */
  onDone?: () => void;
}

export interface BridgeDeps {
  redis: ByteRedis;
  /** Input and control go here: no reply wakes this node per keystroke (redis-writer.ts). */
  writer: RedisWriter;
  hub: Hub;
  log: Logger;
  windowBytes: number;
  claimTimeoutMs: number;
  inputBytesPerSec: number;
  inputMsgsPerSec: number;
  /**
   * Where this bridge reports up (session-control.ts): cancel when the client went away with a close
   * frame, detached when it dropped without one (or this node drains: the shell lives on for the
   * grace period), closed when this connection is done.
   */
  control: Pick<SessionControl, "cancel" | "detached" | "closed">;
  /** Who is attached, across nodes (presence.ts). */
  presence: Presence;
  metrics?: {
    bytesOut(n: number): void;
    bytesIn(n: number): void;
    replay(n: number): void;
    gap(): void;
    /** hello sent (v1) or, for raw clients, the same moment: the session is usable. */
    attached?(): void;
    /** This socket is done, and why (end reason, client_closed, dropped, restarting). */
    closed?(reason: string): void;
  };
}

const READ_CHUNK = 256 * 1024;
const MAX_PENDING_INPUT = 256 * 1024;
/** A claimed session whose shell has not started after this long is given up (spawn_failed). */
const START_TIMEOUT_MS = 60_000;
/** Input frames handled in one go are published as one message up to this size (fewer hops for a flood). */
const COALESCE_BYTES = 64 * 1024;

/**
 * The log reader (catch-up): idle; reading (one read loop runs, never two at once); or reading
 * with news that arrived meanwhile (more output announced, room freed), so the loop reads once more
 * before it stops.
 */
type Pump = "idle" | "reading" | "reread";

/**
 * One client WebSocket attached to one terminal session. Forwards live output
 * while it is contiguous and fills any gap from the replay log by offset; keeps
 * at most `windowBytes` unacknowledged output in flight to the client (the rest
 * waits in the worker's paused PTY and the capped log, never in this process).
 */
export class TerminalBridge {
  readonly sessionId: string;
  readonly workspaceId: string;
  workerId: string | null;
  state: "waiting" | "attached" | "closed" = "waiting";
  /** Offsets, window and ack accounting towards this client. */
  private readonly reader: ReaderWindow;
  private pump: Pump = "idle";
  private pendingEnd: SessionEnd | null;
  private pendingInput: Buffer[] = [];
  private pendingInputBytes = 0;
  private claimTimer: NodeJS.Timeout | null = null;
  /** Client frames, through this connection's input budget (the socket is paused while frames wait). */
  private readonly gate: InputGate;
  /** Input handled this turn, published together once the turn's frames are through (flushInput). */
  private inParts: Buffer[] = [];
  private inPartsBytes = 0;
  private flushQueued = false;
  /** What this connection sent the worker, numbered and kept a few seconds for a resync. */
  private readonly sent = new SentInput();
  private closing = false;
  private readonly frames: FrameWriter;
  private readonly onOut = (msg: Buffer) => this.handleOut(msg);
  private readonly readDone = () => this.settle();
  private readonly readFailed = (err: unknown) => {
    this.deps.log.warn({ err }, "replay from log failed");
    this.settle();
  };
  private readonly catchUpLater = () => this.catchUp();
  private unReconnect: (() => void) | null = null;
  /** Redis Cluster: the session's shard gone for good (subscriber-hub.ts, onLost). */
  private unLost: (() => void) | null = null;
  private cols: number;
  private rows: number;
  readonly role: Role;
  /** This connection's field in the session's attached set, once joined. */
  private presenceId: Promise<string | null> | null = null;
  /** Presence reads: one at a time, once more when a change arrived meanwhile. */
  private presenceRead: "idle" | "reading" | "reread" = "idle";
  private lastPresence: string | null = null;
  /** Other API nodes with presence entries at the last read, and whether they were alive (the watchdog compares). */
  presenceNodes: ReadonlyMap<string, boolean> = new Map();
  private readonly onPresence = () => this.refreshPresence();

  constructor(
    readonly ws: WebSocket,
    private readonly opts: BridgeOptions,
    private readonly deps: BridgeDeps,
  ) {
    this.sessionId = opts.sessionId;
    this.workspaceId = opts.workspaceId;
    this.workerId = opts.workerId;
    this.reader = new ReaderWindow(deps.windowBytes, opts.from);
    this.pendingEnd = opts.endedAlready;
    this.cols = opts.cols;
    this.rows = opts.rows;
    this.role = opts.role;
    this.gate = new InputGate(new InputThrottle(deps.inputBytesPerSec, deps.inputMsgsPerSec), ws, (data, isBinary) => this.handleClient(data, isBinary));
    this.frames = new FrameWriter(ws, opts.mode);
  }

  /** A controller whose client counts its input (input_from). */
  private get countsInput(): boolean {
    return this.role === "controller" && this.opts.inputFrom !== undefined && this.opts.inputFrom !== null;
  }

  get log(): Logger {
    return this.deps.log;
  }

  /** Subscribes before anything else, so no output published from here on is missed. */
  async start(): Promise<void> {
    this.ws.on("message", (data, isBinary) => this.gate.offer(data as Buffer, isBinary));
    this.ws.on("close", (code) => this.handleClose(code));
    this.ws.on("error", (err) => this.deps.log.debug({ err }, "client socket error"));
    this.ws.on("pong", () => this.reader.pong());
    await Promise.all([this.deps.hub.subscribe(this.opts.keys.out, this.onOut), this.deps.hub.subscribe(this.opts.keys.presence, this.onPresence)]);
    this.unReconnect = this.deps.hub.onReconnect(() => {
      this.catchUp();
      // Who joined or left meanwhile: presence changes are announced, not kept in the log.
      this.refreshPresence();
      // What the worker announced meanwhile (ready, the end) is not in the log: the state says.
      void this.recheckState();
    });
    this.unLost = this.deps.hub.onLost(this.opts.keys.out, () => this.finish({ reason: "store_unavailable", offset: 0 }));
    if (this.state === "closed") return;
    this.presenceId = this.deps.presence.join(this.opts.keys, { role: this.role, ...this.opts.who }).catch((err: unknown) => {
      this.deps.log.warn({ err }, "joining the session's presence failed (others do not see this client)");
      return null;
    });
    if (this.opts.isNew) {
      this.claimTimer = setTimeout(() => this.claimTimedOut(), this.deps.claimTimeoutMs);
    } else {
      this.becomeAttached(this.cols, this.rows);
    }
  }

  private becomeAttached(cols: number, rows: number): void {
    if (this.state !== "waiting") return;
    this.state = "attached";
    if (this.claimTimer) clearTimeout(this.claimTimer);
    this.claimTimer = null;
    // A counting client learns from `input_from` here that this server counts (an older one says nothing).
    this.frames.message({ type: "hello", session: this.sessionId, offset: this.reader.next, cols, rows, ...(this.countsInput ? { input_from: this.opts.inputFrom ?? 0 } : {}) });
    this.deps.metrics?.attached?.();
    // Before any input of this connection: where it starts.
    if (this.countsInput) this.control({ t: "input_from", offset: this.opts.inputFrom ?? 0 });
    for (const b of this.pendingInput) this.publishIn({ data: b });
    this.pendingInput = [];
    this.pendingInputBytes = 0;
    // A re-attaching client has everything before its offset: the worker's view of what
    // was consumed may be older (acks are forwarded in steps) and must not keep its PTY paused.
    // A viewer's acks are its own: they never reach the worker, so it never holds the PTY.
    if (this.opts.from > 0 && this.role === "controller") this.control({ t: "ack", offset: this.opts.from });
    this.refreshPresence();
    // A re-attach does not know what it missed until it reads the log. A new session was
    // subscribed before its job existed and the worker announces `ready` before any output:
    // everything arrives live, unless output already showed up (known) while waiting.
    if (this.opts.isNew && this.reader.next >= this.reader.known) this.maybeFinish();
    else this.catchUp();
  }

  private ended(end: SessionEnd): void {
    this.pendingEnd = end;
    this.reader.saw(end.offset);
    if (this.state === "waiting") this.state = "attached";
    this.maybeFinish();
  }

  /**
   * A `ready` or an end published while this node was not subscribed (a re-attach read the state
   * before it subscribed; the subscriber was away) reached nobody here: the state read again says.
   */
  recheck(meta: SessionMeta): void {
    if (this.state === "closed") return;
    if (meta.end && !this.pendingEnd) this.ended(meta.end);
    else if (meta.state === "running" && this.state === "waiting") {
      this.workerId = meta.workerId;
      this.becomeAttached(meta.cols ?? this.cols, meta.rows ?? this.rows);
    }
  }

  /** `recheck` with the state read now (one HGETALL); a failed read is logged, the session goes on. */
  recheckState(): Promise<void> {
    return readSessionMeta(this.deps.redis, this.opts.keys).then(
      (meta) => this.recheck(meta),
      logged(this.deps.log, "warn", "reading the session's state again failed (an announcement that reached nobody here stays missed)"),
    );
  }

  /** A worker holds the job: no no_capacity any more, but the shell must start within START_TIMEOUT_MS. */
  private claimedBy(workerId: string): void {
    if (this.state !== "waiting" || !this.claimTimer) return;
    clearTimeout(this.claimTimer);
    this.workerId = workerId;
    this.claimTimer = setTimeout(() => {
      if (this.state !== "waiting") return;
      void this.deps.control.cancel(this.sessionId, "spawn_failed").catch(logged(this.deps.log, "warn", "could not cancel a session whose shell did not start", { session_id: this.sessionId }));
      this.finish({ reason: "spawn_failed", offset: this.reader.next, message: `the shell did not start within ${START_TIMEOUT_MS / 1000} s` });
    }, START_TIMEOUT_MS);
  }

  private claimTimedOut(): void {
    if (this.state !== "waiting") return;
    void this.deps.control.cancel(this.sessionId, "no_capacity").catch(logged(this.deps.log, "warn", "could not cancel an unclaimed session", { session_id: this.sessionId }));
    this.finish({ reason: "no_capacity", offset: this.reader.next });
  }

  // ---- output: worker -> client -------------------------------------------------------

  private handleOut(msg: Buffer): void {
    const m = decodeOut(msg);
    if (!m || this.state === "closed") return;
    if (m.kind === "event") {
      const ev = m.event;
      if (ev.kind === "claimed") {
        this.claimedBy(ev.workerId);
      } else if (ev.kind === "ready") {
        this.workerId = ev.workerId;
        this.becomeAttached(ev.cols, ev.rows);
      } else if (ev.kind === "resync") {
        this.resync(ev.streams);
      } else if (ev.kind === "input") {
        if (this.countsInput && this.state === "attached") this.frames.message({ type: "input_ack", offset: ev.offset });
      } else {
        this.ended(ev.end);
      }
      return;
    }
    const end = m.offset + m.chunk.length;
    this.reader.saw(end);
    if (this.state !== "attached") return;
    if (this.pump !== "idle") {
      // The read loop forwards it, in order with what it reads.
      this.pump = "reread";
      return;
    }
    if (m.offset > this.reader.next) {
      // A publish we never saw: fetch the missing bytes from the log.
      this.catchUp();
      return;
    }
    if (end <= this.reader.next) return;
    this.sendOutput(m.chunk.subarray(this.reader.next - m.offset));
    if (this.reader.next < this.reader.known) this.catchUp();
    else this.maybeFinish();
  }

  /** Sends as much of `chunk` (which starts at `next`) as the window allows; the rest stays in the log. */
  private sendOutput(chunk: Buffer): void {
    const room = this.reader.room();
    if (room <= 0 || !this.frames.open) return;
    const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
    const endOffset = this.reader.next + part.length;
    this.reader.next = endOffset;
    this.deps.metrics?.bytesOut(part.length);
    // Raw clients cannot ack: bytes count as consumed once the socket took them.
    if (this.opts.mode === "raw") this.frames.output(part, () => this.consumed(endOffset));
    else this.frames.output(part);
  }

  private consumed(offset: number): void {
    const wasBlocked = this.reader.room() <= 0;
    const counted = this.reader.consume(offset);
    if (counted === "stale") return;
    if (counted === "probe") this.probeRtt();
    if (this.reader.takeAck() && this.role === "controller") this.control({ t: "ack", offset: this.reader.acked, window: this.reader.window });
    if ((wasBlocked || this.reader.next < this.reader.known) && this.reader.room() > 0) this.catchUp();
    else this.maybeFinish();
  }

  private probeRtt(): void {
    if (!this.frames.open) return;
    this.reader.pingSent();
    this.ws.ping();
  }

  /**
   * Reads the log from `next` until caught up with everything known, or the window is full. The one
   * way into the read loop: while it runs, a call only asks it to read once more (Pump).
   */
  private catchUp(): void {
    if (this.state !== "attached") return;
    if (this.pump !== "idle") {
      this.pump = "reread";
      return;
    }
    this.pump = "reading";
    this.readLog().then(this.readDone, this.readFailed);
  }

  /** The read loop stopped: go again if news came after its last look (or it failed), else see whether the end is due. */
  private settle(): void {
    const again = this.pump === "reread";
    this.pump = "idle";
    if (this.state === "attached" && again && this.reader.next < this.reader.known && this.reader.room() > 0) setImmediate(this.catchUpLater);
    else this.maybeFinish();
  }

  /** Set by catchUp or live output during an await of readLog (a method, so the compiler does not assume it unchanged). */
  private rereadWanted(): boolean {
    return this.pump === "reread";
  }

  private async readLog(): Promise<void> {
    for (;;) {
      // News from here on makes the loop look again.
      this.pump = "reading";
      const room = this.reader.room();
      if (this.state !== "attached" || room <= 0) return;
      const read = await readOutput(this.deps.redis, this.opts.keys.log, this.reader.next, Math.min(room, READ_CHUNK));
      if (read.lastEnd !== null) this.reader.saw(read.lastEnd);
      if (read.firstStart !== null && read.firstStart > this.reader.next) {
        this.sendGap(read.firstStart);
        continue;
      }
      let progressed = false;
      for (const entry of read.chunks) {
        if (this.reader.room() <= 0) break;
        if (entry.offset > this.reader.next) this.sendGap(entry.offset);
        const end = entry.offset + entry.chunk.length;
        if (end <= this.reader.next) continue;
        const before = this.reader.next;
        this.sendOutput(entry.chunk.subarray(this.reader.next - entry.offset));
        this.deps.metrics?.replay(this.reader.next - before);
        progressed = true;
      }
      if (!progressed) {
        const again = this.rereadWanted();
        // Bytes announced live but absent from a log that holds later ones: really gone.
        // An empty log (Redis restarted) is not a gap yet: the worker re-seeds it.
        if (this.reader.next < this.reader.known && !again && read.chunks.length === 0 && read.firstStart !== null) this.sendGap(this.reader.known);
        if (!again) return;
      }
    }
  }

  private sendGap(to: number): void {
    const from = this.reader.next;
    if (to <= from) return;
    this.deps.metrics?.gap();
    this.frames.message({ type: "gap", from, to });
    this.deps.log.warn({ from, to }, "output gap: older than the replay window");
    this.reader.skipTo(to);
  }

  private maybeFinish(): void {
    const end = this.pendingEnd;
    if (!end || this.state === "closed" || this.state === "waiting") return;
    if (this.reader.next >= end.offset || !this.frames.open) {
      this.finish(end);
    } else if (this.pump === "idle" && this.reader.room() > 0) {
      this.catchUp();
    }
  }

  /** Ends this connection as the protocol says for `end`. */
  finish(end: SessionEnd): void {
    if (this.state === "closed") return;
    this.deps.metrics?.closed?.(end.reason);
    const spec = closeFor(end);
    if (end.reason === "exit") {
      this.frames.message({ type: "exit", code: end.code ?? null, signal: end.signal ?? null });
    } else if (end.reason === "client_closed") {
      // Someone else (the controller) closed it: this client is told why, not just closed.
      this.sendError("session_closed", "the controller closed the session");
    } else if (spec.error) {
      this.sendError(spec.error, spec.message);
    }
    this.closeWith(spec.close, spec.error ?? "");
  }

  /** This node is shutting down: the client re-attaches elsewhere with session and offset. */
  drain(): void {
    if (this.state === "closed") return;
    this.deps.metrics?.closed?.("restarting");
    this.sendError("restarting", "this API node is restarting; re-attach with session and offset");
    this.closeWith(CLOSE.restarting, "restarting");
    if (this.role === "controller") this.deps.control.detached(this);
  }

  private closeWith(code: number, reason: string): void {
    this.closing = true;
    this.cleanup();
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) {
      this.ws.close(code, reason.slice(0, 120));
      // A client that never answers the close handshake must not hold the socket.
      setTimeout(() => this.ws.terminate(), 5000).unref();
    }
  }

  private cleanup(): void {
    if (this.state === "closed") return;
    this.state = "closed";
    if (this.claimTimer) clearTimeout(this.claimTimer);
    this.gate.shutDown();
    this.flushInput();
    this.unReconnect?.();
    this.unLost?.();
    void this.deps.hub.unsubscribe(this.opts.keys.out, this.onOut);
    void this.deps.hub.unsubscribe(this.opts.keys.presence, this.onPresence);
    void this.presenceId?.then((id) => (id ? this.deps.presence.leave(this.opts.keys, id) : undefined)).catch(logged(this.deps.log, "debug", "leaving presence failed (the entry expires with the session)"));
    this.opts.onDone?.();
    this.deps.control.closed(this);
  }

  /** Reads the session's presence and sends `viewers` when it changed: to viewers always, to a controller once anyone watches. */
  refreshPresence(): void {
    if (this.state !== "attached" || this.opts.mode !== "v1") return;
    if (this.presenceRead !== "idle") {
      this.presenceRead = "reread";
      return;
    }
    this.presenceRead = "reading";
    void this.deps.presence
      .read(this.opts.keys)
      .then(({ message: msg, nodes }) => {
        this.presenceNodes = nodes;
        const text = JSON.stringify(msg);
        const relevant = this.role === "viewer" || msg.count > 0 || this.lastPresence !== null;
        if (relevant && text !== this.lastPresence && this.state === "attached") {
          this.lastPresence = text;
          this.frames.message(msg);
        }
      })
      .catch(logged(this.deps.log, "debug", "reading presence failed (the next change reads it again)"))
      .finally(() => {
        const again = this.presenceRead === "reread";
        this.presenceRead = "idle";
        if (again) this.refreshPresence();
      });
  }

  private handleClose(code: number): void {
    if (this.closing || this.state === "closed") return;
    this.closing = true;
    this.deps.metrics?.closed?.(code === 1006 ? "dropped" : "client_closed");
    if (this.role === "viewer") {
      // A viewer going away, however it goes, never touches the shell.
    } else if (code === 1006) {
      // No close frame: network loss. The shell lives on for the grace period.
      this.deps.control.detached(this);
    } else {
      void this.deps.control.cancel(this.sessionId, "client_closed").catch((err) => this.deps.log.warn({ err }, "cancel failed"));
    }
    this.cleanup();
  }

  // ---- input: client -> worker ----------------------------------------------------------

  private handleClient(data: Buffer, isBinary: boolean): void {
    if (this.state === "closed") return;
    if (this.opts.mode === "raw" || isBinary) {
      if (this.role === "viewer") this.sendError("read_only", "this connection is a viewer: input does not reach the shell");
      else this.input(data);
      return;
    }
    // The socket skips ws's UTF-8 check (it would close with 1007): bad text is a bad_message like any other.
    if (!isUtf8(data)) {
      this.sendError("bad_message", "text frames must be valid UTF-8");
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(data.toString("utf8"));
    } catch {
      this.sendError("bad_message", "text frames must be one JSON object");
      return;
    }
    const r = clientMessage.safeParse(parsed);
    if (!r.success) {
      const type = (parsed as { type?: unknown } | null)?.type;
      const known = type === "resize" || type === "ack" || type === "ping";
      const issue = r.error.issues[0];
      this.sendError(
        "bad_message",
        known ? `invalid ${String(type)}: ${issue?.path.join(".")} ${issue?.message}` : `unknown message type: ${JSON.stringify(type ?? null)}`,
      );
      return;
    }
    const msg = r.data;
    switch (msg.type) {
      case "ping":
        this.frames.message({ type: "pong" });
        return;
      case "resize":
        if (this.role === "viewer") {
          this.sendError("read_only", "this connection is a viewer: it cannot resize the shell");
          return;
        }
        this.cols = msg.cols;
        this.rows = msg.rows;
        this.control({ t: "resize", cols: msg.cols, rows: msg.rows });
        return;
      case "ack":
        this.consumed(Math.min(msg.offset, this.reader.next));
        return;
    }
  }

  private input(data: Buffer): void {
    if (data.length === 0) return;
    this.deps.metrics?.bytesIn(data.length);
    if (this.state === "waiting") {
      // Typed before the shell is up: keep it (bounded) and send it once the worker is ready.
      if (this.pendingInputBytes + data.length > MAX_PENDING_INPUT) return;
      this.pendingInput.push(Buffer.from(data));
      this.pendingInputBytes += data.length;
      return;
    }
    // Held until the frames handled in this go are through: a flood of tiny frames becomes a few publishes.
    this.inParts.push(data);
    this.inPartsBytes += data.length;
    if (this.inPartsBytes >= COALESCE_BYTES) this.flushInput();
    else if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => this.flushInput());
    }
  }

  private flushInput(): void {
    this.flushQueued = false;
    if (this.inParts.length === 0) return;
    const data = this.inParts.length === 1 ? this.inParts[0]! : Buffer.concat(this.inParts, this.inPartsBytes);
    this.inParts = [];
    this.inPartsBytes = 0;
    this.send(this.sent.next({ data }));
  }

  private control(msg: ControlMessage): void {
    if (this.state === "waiting") return;
    this.publishIn({ control: encodeControl(msg) });
  }

  /** Control after input the client sent before it must not overtake that input: held input goes first. */
  private publishIn(m: { data: Buffer } | { control: Buffer }): void {
    this.flushInput();
    this.send(this.sent.next(m));
  }

  /**
   * The worker missed messages (its subscriber was away): what this connection sent after the last
   * one it applied goes again, behind a note of where that starts. Only the controller sends input.
   */
  private resync(streams: readonly (readonly [number, number])[]): void {
    if (this.role !== "controller" || this.state !== "attached") return;
    this.flushInput();
    const after = streams.find(([s]) => s === this.sent.stream)?.[1] ?? 0;
    const again = this.sent.since(after);
    this.send(encodeControl({ t: "resent", stream: this.sent.stream, from: again.from }));
    for (const p of again.payloads) this.send(p);
    this.deps.log.info({ after, from: again.from, resent: again.payloads.length }, "worker resync: input sent again");
  }

  private send(payload: Buffer): void {
    if (!this.deps.writer.send(["PUBLISH", this.opts.keys.in, payload], { needsSubscriber: true })) this.deps.log.warn("input dropped: Redis has been unreachable for too long");
  }

  // ---- framing ---------------------------------------------------------------------------

  sendError(code: ErrorCode, message: string): void {
    this.frames.error(code, message);
  }
}
