import { isUtf8 } from "node:buffer";
import type { WebSocket } from "ws";
import {
  CLOSE,
  clientMessage,
  decodeOut,
  encodeControl,
  encodeInput,
  readOutput,
  type ByteRedis,
  type ControlMessage,
  type ErrorCode,
  type Hub,
  type Logger,
  type RedisWriter,
  type ServerMessage,
  type SessionEnd,
  type SessionKeys,
} from "@molecule/shared";
import { closeFor } from "./end-mapping.ts";
import type { SessionControl } from "./session-control.ts";

export type Mode = "v1" | "raw";

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
/**
 * A client that reads slowly gets a smaller window: about this much of its
 * reading time in flight (plus two network round trips, so the window never
 * throttles a fast reader on a slow link), never under MIN_WINDOW. Everything in
 * flight must be read before the answer to a Ctrl-C shows.
 */
const WINDOW_READ_MS = 250;
const MIN_WINDOW = 64 * 1024;
const RATE_SAMPLE_MS = 100;
const RTT_PROBE_MS = 5000;
/** A claimed session whose shell has not started after this long is given up (spawn_failed). */
const START_TIMEOUT_MS = 60_000;
/**
 * Client frames one connection may have handled per event-loop turn (and bytes, though one larger
 * frame always passes alone): the rest waits, with the socket paused, for the next turn, so a client
 * sending thousands of tiny frames cannot hold the loop while other sessions wait for their echo.
 */
const FRAMES_PER_TURN = 64;
const BYTES_PER_TURN = 64 * 1024;
/** A throttled connection's queue is woken when this much of its budget has refilled. */
const BUDGET_WAKE_MS = 10;
/** Input frames handled in one go are published as one message up to this size (fewer hops for a flood). */
const COALESCE_BYTES = 64 * 1024;

/** The event-loop turn this is: bumped by one setImmediate per turn for the whole process, not per frame. */
let turn = 0;
let turnTicking = false;
function currentTurn(): number {
  if (!turnTicking) {
    turnTicking = true;
    setImmediate(() => {
      turn++;
      turnTicking = false;
    });
  }
  return turn;
}

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
  /** Next output offset to send to the client. */
  private next: number;
  /** Output the client has consumed (v1: acks; raw: written to the socket). */
  private acked: number;
  private forwardedAck: number;
  /** Current window: windowBytes, or less for a slow reader (measureReader). */
  private window: number;
  private forwardedWindow: number;
  /** The client's reading speed (bytes/s, 0 until measured) and the interval being measured. */
  private readRate = 0;
  private sampleAt = 0;
  private sampleAcked = 0;
  /** Network round trip (WebSocket ping/pong, answered by the client's network stack, not its renderer). */
  private rttMs = 100;
  private pingAt = 0;
  /** Highest output end offset known to exist (from live messages or the log). */
  private known: number;
  private catchingUp = false;
  private again = false;
  private pendingEnd: SessionEnd | null;
  private pendingInput: Buffer[] = [];
  private pendingInputBytes = 0;
  private claimTimer: NodeJS.Timeout | null = null;
  /** Client frames waiting for this connection's next turn or input budget (the socket is paused meanwhile). */
  private inbox: { data: Buffer; isBinary: boolean }[] = [];
  private inboxAt = 0;
  private inboxWake: { immediate: NodeJS.Immediate } | { timeout: NodeJS.Timeout } | null = null;
  private turnSeen = -1;
  private turnFrames = 0;
  private turnBytes = 0;
  /** Input handled this turn, published together once the turn's frames are through (flushInput). */
  private inParts: Buffer[] = [];
  private inPartsBytes = 0;
  private flushQueued = false;
  private byteTokens: number;
  private msgTokens: number;
  private lastRefill = Date.now();
  private closing = false;
  private readonly onOut = (msg: Buffer) => this.handleOut(msg);
  private unReconnect: (() => void) | null = null;
  private cols: number;
  private rows: number;
  bytesIn = 0;

  constructor(
    readonly ws: WebSocket,
    private readonly o: BridgeOptions,
    private readonly d: BridgeDeps,
  ) {
    this.sessionId = o.sessionId;
    this.workspaceId = o.workspaceId;
    this.workerId = o.workerId;
    this.next = o.from;
    this.acked = o.from;
    this.forwardedAck = o.from;
    this.window = d.windowBytes;
    this.forwardedWindow = d.windowBytes;
    this.known = o.from;
    this.pendingEnd = o.endedAlready;
    this.cols = o.cols;
    this.rows = o.rows;
    this.byteTokens = d.inputBytesPerSec;
    this.msgTokens = d.inputMsgsPerSec;
  }

  get log(): Logger {
    return this.d.log;
  }

  /** Subscribes before anything else, so no output published from here on is missed. */
  async start(): Promise<void> {
    this.ws.on("message", (data, isBinary) => this.onFrame(data as Buffer, isBinary));
    this.ws.on("close", (code) => this.handleClose(code));
    this.ws.on("error", (err) => this.d.log.debug({ err }, "client socket error"));
    this.ws.on("pong", () => {
      if (!this.pingAt) return;
      const rtt = performance.now() - this.pingAt;
      this.pingAt = 0;
      // Lower samples win at once; higher ones only slowly (a queue, not the link).
      this.rttMs = rtt < this.rttMs ? rtt : this.rttMs * 0.75 + rtt * 0.25;
    });
    await this.d.hub.subscribe(this.o.keys.out, this.onOut);
    this.unReconnect = this.d.hub.onReconnect(() => this.catchUp());
    if (this.state === "closed") return;
    if (this.o.isNew) {
      this.claimTimer = setTimeout(() => this.claimTimedOut(), this.d.claimTimeoutMs);
    } else {
      this.becomeAttached(this.cols, this.rows);
    }
  }

  private becomeAttached(cols: number, rows: number): void {
    if (this.state !== "waiting") return;
    this.state = "attached";
    if (this.claimTimer) clearTimeout(this.claimTimer);
    this.claimTimer = null;
    this.sendJson({ type: "hello", session: this.sessionId, offset: this.next, cols, rows });
    this.d.metrics?.attached?.();
    for (const b of this.pendingInput) this.publishIn(encodeInput(b));
    this.pendingInput = [];
    this.pendingInputBytes = 0;
    // A re-attaching client has everything before its offset: the worker's view of what
    // was consumed may be older (acks are forwarded in steps) and must not keep its PTY paused.
    if (this.o.from > 0) this.publishIn(encodeControl({ t: "ack", offset: this.o.from }));
    // A re-attach does not know what it missed until it reads the log. A new session was
    // subscribed before its job existed and the worker announces `ready` before any output:
    // everything arrives live, unless output already showed up (known) while waiting.
    if (this.o.isNew && this.next >= this.known) this.maybeFinish();
    else this.catchUp();
  }

  /** A worker holds the job: no no_capacity any more, but the shell must start within START_TIMEOUT_MS. */
  private claimedBy(workerId: string): void {
    if (this.state !== "waiting" || !this.claimTimer) return;
    clearTimeout(this.claimTimer);
    this.workerId = workerId;
    this.claimTimer = setTimeout(() => {
      if (this.state !== "waiting") return;
      void this.d.control.cancel(this.sessionId, "spawn_failed").catch(() => {});
      this.finish({ reason: "spawn_failed", offset: this.next, message: `the shell did not start within ${START_TIMEOUT_MS / 1000} s` });
    }, START_TIMEOUT_MS);
  }

  private claimTimedOut(): void {
    if (this.state !== "waiting") return;
    void this.d.control.cancel(this.sessionId, "no_capacity").catch(() => {});
    this.finish({ reason: "no_capacity", offset: this.next });
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
      } else {
        this.pendingEnd = ev.end;
        this.known = Math.max(this.known, ev.end.offset);
        if (this.state === "waiting") this.state = "attached";
        this.maybeFinish();
      }
      return;
    }
    const end = m.offset + m.chunk.length;
    if (end > this.known) this.known = end;
    if (this.state !== "attached" || this.catchingUp) {
      this.again = true;
      return;
    }
    if (m.offset > this.next) {
      // A publish we never saw: fetch the missing bytes from the log.
      this.catchUp();
      return;
    }
    if (end <= this.next) return;
    this.sendOutput(m.chunk.subarray(this.next - m.offset));
    if (this.next < this.known) this.catchUp();
    else this.maybeFinish();
  }

  private room(): number {
    return this.window - (this.next - this.acked);
  }

  /** Sends as much of `chunk` (which starts at `next`) as the window allows; the rest stays in the log. */
  private sendOutput(chunk: Buffer): void {
    const room = this.room();
    if (room <= 0 || this.ws.readyState !== this.ws.OPEN) return;
    const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
    const endOffset = this.next + part.length;
    this.next = endOffset;
    this.d.metrics?.bytesOut(part.length);
    if (this.o.mode === "raw") {
      // Raw clients cannot ack: bytes count as consumed once the socket took them.
      this.ws.send(part, { binary: true }, () => this.consumed(endOffset));
    } else {
      this.ws.send(part, { binary: true });
    }
  }

  private consumed(offset: number): void {
    if (offset <= this.acked || offset > this.next) return;
    const wasBlocked = this.room() <= 0;
    this.acked = offset;
    this.measureReader();
    this.forwardAck();
    if ((wasBlocked || this.next < this.known) && this.room() > 0) this.catchUp();
    else this.maybeFinish();
  }

  /**
   * Tells the worker what the client consumed, so it pauses or resumes the PTY:
   * every window/8 consumed, or on any progress once the worker may be near its
   * pause point (it pauses when a window is unacknowledged as far as it knows).
   * Not on every ack: a browser acks every keystroke's echo.
   */
  private forwardAck(): void {
    const delta = this.acked - this.forwardedAck;
    // A window that changed by a quarter or more goes to the worker at once.
    const windowMoved = Math.abs(this.window - this.forwardedWindow) >= this.forwardedWindow / 4;
    if (delta <= 0 && !windowMoved) return;
    if (windowMoved || delta >= this.window / 8 || this.known - this.forwardedAck >= this.window / 2) {
      this.forwardedAck = this.acked;
      this.forwardedWindow = this.window;
      this.publishIn(encodeControl({ t: "ack", offset: this.acked, window: this.window }));
    }
  }

  /**
   * Measures how fast the client reads while it has output waiting (not while
   * the shell is quiet), and sizes the window to it: see WINDOW_READ_MS.
   */
  private measureReader(): void {
    const now = performance.now();
    const workerAtWindow = this.known - this.forwardedAck >= (this.forwardedWindow * 7) / 8;
    if (this.next >= this.known && this.next - this.acked < MIN_WINDOW / 4 && !workerAtWindow) {
      // Caught up with everything the shell wrote (and not held back by the window):
      // this says nothing about the client's speed.
      this.sampleAt = 0;
      return;
    }
    if (this.sampleAt === 0) {
      this.sampleAt = now;
      this.sampleAcked = this.acked;
      return;
    }
    const dt = now - this.sampleAt;
    if (dt < RATE_SAMPLE_MS) return;
    const rate = ((this.acked - this.sampleAcked) * 1000) / dt;
    this.readRate = this.readRate === 0 ? rate : (this.readRate + rate) / 2;
    this.sampleAt = now;
    this.sampleAcked = this.acked;
    const want = (this.readRate * (WINDOW_READ_MS + 2 * this.rttMs)) / 1000;
    this.window = Math.round(Math.min(this.d.windowBytes, Math.max(MIN_WINDOW, want)));
    if (!this.pingAt && (this.lastPing === 0 || now - this.lastPing >= RTT_PROBE_MS)) this.probeRtt();
  }

  private lastPing = 0;

  private probeRtt(): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.pingAt = this.lastPing = performance.now();
    this.ws.ping();
  }

  /** Reads the log from `next` until caught up with everything known, or the window is full. */
  catchUp(): void {
    if (this.state !== "attached") return;
    if (this.catchingUp) {
      this.again = true;
      return;
    }
    this.catchingUp = true;
    void this.runCatchUp()
      .catch((err) => this.d.log.warn({ err }, "replay from log failed"))
      .finally(() => {
        this.catchingUp = false;
        if (this.state === "attached" && this.again && this.next < this.known && this.room() > 0) {
          setImmediate(() => this.catchUp());
        } else {
          this.maybeFinish();
        }
      });
  }

  private async runCatchUp(): Promise<void> {
    for (;;) {
      this.again = false;
      const room = this.room();
      if (this.state !== "attached" || room <= 0) return;
      const r = await readOutput(this.d.redis, this.o.keys.log, this.next, Math.min(room, READ_CHUNK));
      if (r.lastEnd !== null && r.lastEnd > this.known) this.known = r.lastEnd;
      if (r.firstStart !== null && r.firstStart > this.next) {
        this.sendGap(r.firstStart);
        continue;
      }
      let progressed = false;
      for (const c of r.chunks) {
        if (this.room() <= 0) break;
        if (c.offset > this.next) this.sendGap(c.offset);
        const end = c.offset + c.chunk.length;
        if (end <= this.next) continue;
        const before = this.next;
        this.sendOutput(c.chunk.subarray(this.next - c.offset));
        this.d.metrics?.replay(this.next - before);
        progressed = true;
      }
      if (!progressed) {
        // Bytes announced live but absent from a log that holds later ones: really gone.
        // An empty log (Redis restarted) is not a gap yet: the worker re-seeds it.
        if (this.next < this.known && !this.again && r.chunks.length === 0 && r.firstStart !== null) this.sendGap(this.known);
        if (!this.again) return;
      }
    }
  }

  private sendGap(to: number): void {
    if (to <= this.next) return;
    this.d.metrics?.gap();
    if (this.o.mode === "v1") this.sendJson({ type: "gap", from: this.next, to });
    this.d.log.warn({ from: this.next, to }, "output gap: older than the replay window");
    this.next = to;
    if (this.acked < to - this.d.windowBytes) this.acked = to - this.d.windowBytes;
    this.known = Math.max(this.known, to);
  }

  private maybeFinish(): void {
    const end = this.pendingEnd;
    if (!end || this.state === "closed" || this.state === "waiting") return;
    if (this.next >= end.offset || this.ws.readyState !== this.ws.OPEN) {
      this.finish(end);
    } else if (!this.catchingUp && this.room() > 0) {
      this.catchUp();
    }
  }

  /** Ends this connection as the protocol says for `end`. */
  finish(end: SessionEnd): void {
    if (this.state === "closed") return;
    this.d.metrics?.closed?.(end.reason);
    const spec = closeFor(end);
    if (end.reason === "exit") {
      this.sendJson({ type: "exit", code: end.code ?? null, signal: end.signal ?? null });
    } else if (spec.error) {
      this.sendError(spec.error, spec.message);
    }
    this.closeWith(spec.close, spec.error ?? "");
  }

  /** This node is shutting down: the client re-attaches elsewhere with session and offset. */
  drain(): void {
    if (this.state === "closed") return;
    this.d.metrics?.closed?.("restarting");
    this.sendError("restarting", "this API node is restarting; re-attach with session and offset");
    this.closeWith(CLOSE.restarting, "restarting");
    this.d.control.detached(this);
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
    this.clearInbox();
    this.unReconnect?.();
    void this.d.hub.unsubscribe(this.o.keys.out, this.onOut);
    this.d.control.closed(this);
  }

  private handleClose(code: number): void {
    if (this.closing || this.state === "closed") return;
    this.closing = true;
    this.d.metrics?.closed?.(code === 1006 ? "dropped" : "client_closed");
    if (code === 1006) {
      // No close frame: network loss. The shell lives on for the grace period.
      this.d.control.detached(this);
    } else {
      void this.d.control.cancel(this.sessionId, "client_closed").catch((err) => this.d.log.warn({ err }, "cancel failed"));
    }
    this.cleanup();
  }

  // ---- input: client -> worker ----------------------------------------------------------

  /**
   * Every client frame, in order: handled now if this connection's turn and input budget allow,
   * else queued with the socket paused (ws still hands over the frames of the chunk it is parsing,
   * so the queue holds at most about one socket read) until drainInbox gets to it.
   */
  private onFrame(data: Buffer, isBinary: boolean): void {
    if (this.state === "closed") return;
    if (this.inboxAt === this.inbox.length && this.admit(data.length)) {
      this.handleClient(data, isBinary);
      return;
    }
    if (this.inboxAt === this.inbox.length) this.ws.pause();
    this.inbox.push({ data, isBinary });
    this.wakeInbox();
  }

  private drainInbox(): void {
    this.inboxWake = null;
    while (this.inboxAt < this.inbox.length && this.state !== "closed") {
      const f = this.inbox[this.inboxAt]!;
      if (!this.admit(f.data.length)) {
        this.wakeInbox();
        return;
      }
      this.inbox[this.inboxAt++] = undefined as never;
      this.handleClient(f.data, f.isBinary);
    }
    this.inbox = [];
    this.inboxAt = 0;
    if (this.state !== "closed") this.ws.resume();
  }

  /** Drains the queue on the next turn, or once an empty input budget has refilled a little (budgetWaitMs). */
  private wakeInbox(): void {
    if (this.inboxWake || this.state === "closed") return;
    const wait = this.budgetWaitMs();
    this.inboxWake = wait > 0 ? { timeout: setTimeout(() => this.drainInbox(), wait) } : { immediate: setImmediate(() => this.drainInbox()) };
  }

  private clearInbox(): void {
    const w = this.inboxWake;
    if (w && "timeout" in w) clearTimeout(w.timeout);
    else if (w) clearImmediate(w.immediate);
    this.inboxWake = null;
    this.inbox = [];
    this.inboxAt = 0;
    this.flushInput();
  }

  /**
   * Whether a frame of `bytes` may be handled now: within this turn's share (one larger frame
   * always passes alone) and the token buckets for bytes and messages (which may go negative by
   * that one frame; the next waits until they are positive again). Charges it if so.
   */
  private admit(bytes: number): boolean {
    const t = currentTurn();
    if (t !== this.turnSeen) {
      this.turnSeen = t;
      this.turnFrames = 0;
      this.turnBytes = 0;
    }
    if (this.turnFrames >= FRAMES_PER_TURN || (this.turnFrames > 0 && this.turnBytes + bytes > BYTES_PER_TURN)) return false;
    this.refill();
    if (this.byteTokens <= 0 || this.msgTokens <= 0) return false;
    this.turnFrames++;
    this.turnBytes += bytes;
    this.byteTokens -= bytes;
    this.msgTokens -= 1;
    return true;
  }

  private refill(): void {
    const now = Date.now();
    const dt = (now - this.lastRefill) / 1000;
    this.lastRefill = now;
    this.byteTokens = Math.min(this.d.inputBytesPerSec, this.byteTokens + dt * this.d.inputBytesPerSec);
    this.msgTokens = Math.min(this.d.inputMsgsPerSec, this.msgTokens + dt * this.d.inputMsgsPerSec);
  }

  /**
   * How long until an empty token bucket holds BUDGET_WAKE_MS of budget again (0: it is not empty,
   * the turn share needs only the next turn): a throttled client is served in small batches, not
   * one frame per timer.
   */
  private budgetWaitMs(): number {
    this.refill();
    const bytes = this.byteTokens > 0 ? 0 : -this.byteTokens / this.d.inputBytesPerSec + BUDGET_WAKE_MS / 1000;
    const msgs = this.msgTokens > 0 ? 0 : -this.msgTokens / this.d.inputMsgsPerSec + BUDGET_WAKE_MS / 1000;
    return Math.ceil(Math.max(bytes, msgs) * 1000);
  }

  private handleClient(data: Buffer, isBinary: boolean): void {
    if (this.state === "closed") return;
    if (this.o.mode === "raw" || isBinary) {
      this.input(data);
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
        this.sendJson({ type: "pong" });
        return;
      case "resize":
        this.cols = msg.cols;
        this.rows = msg.rows;
        this.control({ t: "resize", cols: msg.cols, rows: msg.rows });
        return;
      case "ack":
        this.consumed(Math.min(msg.offset, this.next));
        return;
    }
  }

  private input(data: Buffer): void {
    if (data.length === 0) return;
    this.bytesIn += data.length;
    this.d.metrics?.bytesIn(data.length);
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
    this.send(encodeInput(data));
  }

  private control(c: ControlMessage): void {
    if (this.state === "waiting") return;
    this.publishIn(encodeControl(c));
  }

  /** Control after input the client sent before it must not overtake that input: held input goes first. */
  private publishIn(payload: Buffer): void {
    this.flushInput();
    this.send(payload);
  }

  private send(payload: Buffer): void {
    if (!this.d.writer.send(["PUBLISH", this.o.keys.in, payload])) this.d.log.warn("input dropped: Redis has been unreachable for too long");
  }

  // ---- framing ---------------------------------------------------------------------------

  private sendJson(m: ServerMessage): void {
    if (this.o.mode !== "v1" || this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(JSON.stringify(m));
  }

  sendError(code: ErrorCode, message: string): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    if (this.o.mode === "v1") this.ws.send(JSON.stringify({ type: "error", code, message }));
    else if (code !== "bad_message") this.ws.send(`Error: ${message}\r\n`);
  }
}
