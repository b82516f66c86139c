import { AckSchedule } from "@molecule/shared/ack-schedule";
import { InputCounter } from "@molecule/shared/input-counter";
import { SUBPROTOCOL_V1, type ServerMessage, type ViewersMessage } from "@molecule/shared/protocol-constants";
import { describeClose, type CloseMeaning } from "./close-codes.ts";

/** The part of the browser's WebSocket this client uses (a fake stands in for it in unit tests). */
export interface SocketLike {
  binaryType: BinaryType;
  readonly readyState: number;
  send(data: string | ArrayBuffer | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

const OPEN = 1;

/** A ticket request failed: `fatal` when retrying cannot help (token revoked, workspace gone). */
export class TicketError extends Error {
  constructor(
    message: string,
    readonly fatal: boolean,
  ) {
    super(message);
  }
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(t: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(t: unknown): void;
  now(): number;
}

export interface ConnectionOptions {
  /** `ws(s)://host/workspaces/{id}/terminal` (no query). */
  endpoint: string;
  /** A fresh single-use ticket (POST /workspaces/{id}/terminal/tickets); called once per attempt. */
  ticket(): Promise<string>;
  socket(url: string, protocol: string): SocketLike;
  timers?: Timers;
  random?: () => number;
  /** Ack consumed output at least this often (the protocol asks for at least every 64 KiB). */
  ackEveryBytes?: number;
  /** ...and at most this long after it was consumed, once output goes quiet (not per echo: see AckSchedule). */
  ackQuietMs?: number;
  /** How long to keep trying to re-attach after a drop (the server's orphan grace period). */
  resumeWindowMs?: number;
  /** Delays between attempts; the last one repeats. */
  backoffMs?: number[];
  pingEveryMs?: number;
  /** Keystrokes kept while (re)connecting, sent once the shell is back. */
  maxPendingInputBytes?: number;
  /** Watch this live session as a viewer (mode=view): output only, no input or resizes. */
  watch?: string;
}

export type ConnectionState =
  | { kind: "idle" }
  | { kind: "connecting"; attempt: number }
  | { kind: "open"; session: string }
  | { kind: "reconnecting"; attempt: number; retryInMs: number; because: string }
  | {
      kind: "ended";
      code: number;
      meaning: CloseMeaning;
      /** The server's own words (its `error` message), when it sent one. */
      message: string | null;
      exit: { code: number | null; signal: string | number | null } | null;
    };

export interface ConnectionEvents {
  /** Output bytes ending at output offset `end`: call `consumed(end)` once they are on screen. */
  output(data: Uint8Array, end: number): void;
  /** Output `from`..`to` is no longer kept by the server; the stream goes on at `to`. Call `consumed(to)` after showing it. */
  gap(from: number, to: number): void;
  state(s: ConnectionState): void;
  /** A new session replaces an ended one (the Reconnect button). */
  newSession?(): void;
  /** Who watches the session changed (presence). */
  viewers?(m: ViewersMessage): void;
}

const defaultTimers: Timers = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (t) => globalThis.clearTimeout(t as ReturnType<typeof globalThis.setTimeout>),
  setInterval: (fn, ms) => globalThis.setInterval(fn, ms),
  clearInterval: (t) => globalThis.clearInterval(t as ReturnType<typeof globalThis.setInterval>),
  now: () => Date.now(),
};

const encoder = new TextEncoder();

/**
 * One Terminal tab's connection, speaking molecule.terminal.v1: tracks the output
 * offset received and consumed, acks from the consumer's callback, re-attaches by
 * itself with `session` + `offset` after a drop or 1012 (a fresh ticket each time,
 * with backoff), and turns each real end into words. No DOM in here.
 */
export class TerminalConnection {
  private readonly opts: Required<Omit<ConnectionOptions, "timers" | "random" | "watch">> & { timers: Timers; random: () => number };
  /**
   * A controller counts its input (protocol `input_from`): keys in flight when the API node
   * holding the socket dies go again after the re-attach, and the shell gets each once. Null for
   * a viewer; a new one per session.
   */
  private counter: InputCounter | null;
  /** The session this connection only watches (mode=view), or null for a controller. */
  readonly watch: string | null;
  private ws: SocketLike | null = null;
  private st: ConnectionState = { kind: "idle" };
  /** Session id from the last hello; null before the first one and after a real end. */
  session: string | null = null;
  /** Next output offset expected from the server (bytes received + gaps). */
  received = 0;
  /** Output offset the consumer has put on screen. */
  consumedOffset = 0;
  private readonly acks: AckSchedule;
  private cols: number;
  private rows: number;
  /** Size the server knows (hello or the last resize sent). */
  private serverSize: { cols: number; rows: number } | null = null;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private attempt = 0;
  private droppedAt: number | null = null;
  private retryTimer: unknown = null;
  private pingTimer: unknown = null;
  private lastError: { code: string; message: string } | null = null;
  private lastExit: { code: number | null; signal: string | number | null } | null = null;
  private disposed = false;

  constructor(
    opts: ConnectionOptions,
    private readonly ev: ConnectionEvents,
    size: { cols: number; rows: number } = { cols: 80, rows: 24 },
  ) {
    this.opts = {
      ackEveryBytes: 32 * 1024,
      ackQuietMs: 1000,
      resumeWindowMs: 60_000,
      backoffMs: [250, 500, 1000, 2000, 4000],
      pingEveryMs: 25_000,
      maxPendingInputBytes: 64 * 1024,
      timers: defaultTimers,
      random: Math.random,
      ...opts,
    };
    this.cols = size.cols;
    this.rows = size.rows;
    this.watch = opts.watch ?? null;
    this.session = this.watch;
    this.counter = this.newCounter();
    const timers = this.opts.timers;
    this.acks = new AckSchedule({
      everyBytes: this.opts.ackEveryBytes,
      quietMs: this.opts.ackQuietMs,
      send: (offset) => this.sendAck(offset),
      setTimeout: (fn, ms) => timers.setTimeout(fn, ms),
      clearTimeout: (t) => timers.clearTimeout(t),
    });
  }

  get state(): ConnectionState {
    return this.st;
  }

  private newCounter(): InputCounter | null {
    return this.watch ? null : new InputCounter();
  }

  /** Opens a new session. */
  start(): void {
    if (this.disposed || this.ws) return;
    this.attempt = 0;
    this.setState({ kind: "connecting", attempt: 0 });
    void this.connect();
  }

  /** After a real end (the Reconnect button): a new shell, appended below the old output. */
  restart(): void {
    if (this.disposed || this.st.kind !== "ended" || this.watch) return;
    this.session = null;
    this.received = 0;
    this.consumedOffset = 0;
    this.acks.reset(0);
    this.counter = this.newCounter();
    this.lastError = null;
    this.lastExit = null;
    this.droppedAt = null;
    this.ev.newSession?.();
    this.start();
  }

  /** While waiting to re-attach: try now instead of after the backoff. */
  retryNow(): void {
    // Only while waiting: an attempt already under way must not get a twin.
    if (this.st.kind !== "reconnecting" || this.retryTimer === null) return;
    this.clearRetry();
    void this.connect();
  }

  /** Keyboard input (xterm's onData gives a string, onBinary raw bytes). */
  send(data: string | Uint8Array): void {
    if (this.watch) return;
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    if (bytes.length === 0 || this.disposed || this.st.kind === "ended") return;
    const now = this.st.kind === "open" && this.ws?.readyState === OPEN;
    if (this.counter?.active) {
      // Kept until the server acknowledges it; what waits for a connection is bounded as before.
      if (!now && this.counter.unsentBytes + bytes.length > this.opts.maxPendingInputBytes) return;
      this.counter.add(bytes, now);
      if (now) this.ws!.send(bytes);
      return;
    }
    if (now) {
      this.ws!.send(bytes);
      return;
    }
    if (this.pendingBytes + bytes.length > this.opts.maxPendingInputBytes) return;
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
  }

  /** The terminal panel changed size. */
  resize(cols: number, rows: number): void {
    this.cols = cols;
    this.rows = rows;
    this.syncSize();
  }

  /** The consumer has shown all output up to `offset` (from xterm's write callback). */
  consumed(offset: number): void {
    if (offset <= this.consumedOffset) return;
    this.consumedOffset = offset;
    this.acks.consumed(Math.min(offset, this.received));
  }

  /** Closing the tab: a close frame ends the shell on the server. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.clearRetry();
    this.stopPing();
    this.acks.cancel();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      this.detach(ws);
      if (ws.readyState <= OPEN) ws.close(1000, "closed");
    }
  }

  // ---- internals ---------------------------------------------------------------------

  private setState(s: ConnectionState): void {
    this.st = s;
    this.ev.state(s);
  }

  private url(ticket: string): string {
    const q = new URLSearchParams({ ticket, cols: String(this.cols), rows: String(this.rows) });
    if (this.session) {
      q.set("session", this.session);
      q.set("offset", String(this.received));
    }
    if (this.watch) q.set("mode", "view");
    if (this.counter?.active) q.set("input_from", String(this.counter.acked));
    return `${this.opts.endpoint}?${q}`;
  }

  private async connect(): Promise<void> {
    let ticket: string;
    try {
      ticket = await this.opts.ticket();
    } catch (err) {
      if (this.disposed) return;
      const fatal = err instanceof TicketError && err.fatal;
      if (fatal) this.end(1006, (err as Error).message);
      else this.dropped(1006, `could not get a ticket: ${(err as Error).message}`);
      return;
    }
    if (this.disposed) return;
    const ws = this.opts.socket(this.url(ticket), SUBPROTOCOL_V1);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.lastError = null;
    ws.onmessage = (m) => this.onMessage(m.data);
    ws.onclose = (c) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.detach(ws);
      this.stopPing();
      // Owed acks go with the socket: the next hello says where the server counts from.
      this.acks.cancel();
      this.onClose(c.code);
    };
    // A WebSocket error is always followed by its close, which decides what happens next.
    ws.onerror = null;
  }

  private detach(ws: SocketLike): void {
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = null;
    ws.onopen = null;
  }

  private onMessage(data: unknown): void {
    if (typeof data !== "string") {
      const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : (data as Uint8Array);
      if (bytes.length === 0) return;
      this.received += bytes.length;
      this.ev.output(bytes, this.received);
      return;
    }
    let m: ServerMessage;
    try {
      m = JSON.parse(data) as ServerMessage;
    } catch {
      return;
    }
    switch (m.type) {
      case "hello":
        this.onHello(m);
        return;
      case "gap":
        if (m.to > this.received) {
          this.received = m.to;
          this.ev.gap(m.from, m.to);
        }
        return;
      case "exit":
        this.lastExit = { code: m.code, signal: m.signal };
        return;
      case "error":
        // bad_message does not close; anything else is followed by the close that explains it.
        if (m.code !== "bad_message") this.lastError = { code: m.code, message: m.message };
        return;
      case "pong":
        return;
      case "viewers":
        this.ev.viewers?.(m);
        return;
      case "input_ack":
        this.counter?.ack(m.offset);
        return;
    }
  }

  private onHello(m: Extract<ServerMessage, { type: "hello" }>): void {
    const resumed = this.session === m.session;
    this.session = m.session;
    if (!resumed || m.offset > this.received) {
      // A new session counts from its own offset; a server that cannot start where we
      // asked would have said so with `gap`, so any jump here is one too.
      if (resumed) this.ev.gap(this.received, m.offset);
      this.received = m.offset;
    }
    // The server counts the window from where this connection starts.
    this.acks.reset(m.offset);
    this.serverSize = { cols: m.cols, rows: m.rows };
    this.attempt = 0;
    this.droppedAt = null;
    this.setState({ kind: "open", session: m.session });
    this.syncSize();
    // Counted: everything after the last ack again (a server that does not count gets only what
    // never went out, and the counting stops); then what waited uncounted.
    const pending = [...(this.counter?.active ? this.counter.hello(m.input_from) : []), ...this.pending];
    this.pending = [];
    this.pendingBytes = 0;
    for (const b of pending) this.ws?.send(b);
    this.startPing();
  }

  private onClose(code: number): void {
    if (this.disposed) return;
    const meaning = describeClose(code);
    if (meaning.resumable && this.lastExit === null) {
      this.dropped(code, meaning.title);
      return;
    }
    this.end(code, this.lastError?.message ?? null);
  }

  /** The socket dropped (or never came up): try again with backoff until the resume window closes. */
  private dropped(code: number, because: string): void {
    const now = this.opts.timers.now();
    this.droppedAt ??= now;
    if (now - this.droppedAt >= this.opts.resumeWindowMs) {
      this.end(code, `could not reconnect within ${Math.round(this.opts.resumeWindowMs / 1000)} s`);
      return;
    }
    const b = this.opts.backoffMs;
    const base = b[Math.min(this.attempt, b.length - 1)] ?? 1000;
    // ±20 % jitter, so tabs dropped together do not come back in lockstep.
    const delay = Math.round(base * (0.8 + 0.4 * this.opts.random()));
    this.attempt++;
    this.setState({ kind: "reconnecting", attempt: this.attempt, retryInMs: delay, because });
    this.clearRetry();
    this.retryTimer = this.opts.timers.setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, delay);
  }

  private end(code: number, message: string | null): void {
    this.clearRetry();
    this.stopPing();
    this.acks.cancel();
    this.pending = [];
    this.pendingBytes = 0;
    const exit = this.lastExit;
    this.session = null;
    this.setState({ kind: "ended", code, meaning: describeClose(code), message, exit });
  }

  private sendAck(offset: number): boolean {
    if (this.st.kind !== "open" || this.ws?.readyState !== OPEN) return false;
    this.ws.send(JSON.stringify({ type: "ack", offset }));
    return true;
  }

  private syncSize(): void {
    // A viewer's size is its own: the shell keeps the controller's.
    if (this.watch || this.st.kind !== "open" || this.ws?.readyState !== OPEN) return;
    const s = this.serverSize;
    if (s && s.cols === this.cols && s.rows === this.rows) return;
    this.serverSize = { cols: this.cols, rows: this.rows };
    this.ws.send(JSON.stringify({ type: "resize", cols: this.cols, rows: this.rows }));
  }

  private startPing(): void {
    this.stopPing();
    // Keeps idle sockets alive through load balancers' tunnel timeouts (pings are not input).
    this.pingTimer = this.opts.timers.setInterval(() => {
      if (this.ws?.readyState === OPEN) this.ws.send(JSON.stringify({ type: "ping" }));
    }, this.opts.pingEveryMs);
  }

  private stopPing(): void {
    if (this.pingTimer !== null) this.opts.timers.clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  private clearRetry(): void {
    if (this.retryTimer !== null) this.opts.timers.clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }
}
