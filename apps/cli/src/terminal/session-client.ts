import { AckSchedule } from "@molecule/shared/ack-schedule";
import WebSocket from "ws";
import { z } from "zod";
import { InputCounter } from "@molecule/shared/input-counter";
import { CliError } from "../errors.ts";

/** docs/terminal-protocol.md */
export const SUBPROTOCOL_V1 = "molecule.terminal.v1";
/** Ack after this much output is consumed (the server's window is 512 KiB by default), or a second after, once output is quiet. */
const ACK_EVERY = 32 * 1024;
const ACK_QUIET_MS = 1000;
/** Keystrokes typed while disconnected are kept up to this much and sent after the re-attach. */
const MAX_PENDING_INPUT = 1024 * 1024;
const PING_EVERY_MS = 15_000;
/** Input buffered in the socket beyond which the source pauses, and below which it resumes. */
const HIGH_WATER = 4 * 1024 * 1024;
const LOW_WATER = 1024 * 1024;
/** Input kept while disconnected goes out in frames of this size (the server refuses frames over 1 MiB). */
const RESEND_FRAME = 256 * 1024;
/** With `countInput`: input sent and not yet acknowledged kept at most this much (the source pauses). */
const MAX_UNACKED = 8 * 1024 * 1024;

const serverMessage = z.discriminatedUnion("type", [
  z
    .object({ type: z.literal("hello"), session: z.string(), offset: z.number().int().min(0), cols: z.number(), rows: z.number(), input_from: z.number().int().min(0).optional() })
    .loose(),
  z.object({ type: z.literal("gap"), from: z.number().int(), to: z.number().int() }).loose(),
  z.object({ type: z.literal("exit"), code: z.number().int().nullable(), signal: z.union([z.string(), z.number()]).nullable() }).loose(),
  z.object({ type: z.literal("error"), code: z.string(), message: z.string() }).loose(),
  z.object({ type: z.literal("pong") }).loose(),
  z.object({ type: z.literal("input_ack"), offset: z.number().int().min(0) }).loose(),
]);
type ServerMessage = z.infer<typeof serverMessage>;

/** Close codes after which the same session can be re-attached (a node restarting, a dropped connection). */
const RESUMABLE = new Set([1001, 1005, 1006, 1011, 1012]);

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGPIPE: 13, SIGTERM: 15, SIGSEGV: 11, SIGABRT: 6 };

export function exitCodeOf(code: number | null, signal: string | number | null): number {
  if (code !== null) return code;
  if (typeof signal === "number") return 128 + signal;
  if (typeof signal === "string") return 128 + (SIGNAL_NUMBERS[signal] ?? 0);
  return 1;
}

export interface SessionClientOptions {
  api: string;
  token: string;
  workspaceId: string;
  userAgent: string;
  cols: number;
  rows: number;
  term?: string;
  /** Output bytes, in order; `done` is called once the bytes are consumed (they are acked after it). */
  onOutput(data: Buffer, done: () => void): void;
  /** One-line notices for the user (lost output). */
  onNotice(line: string): void;
  /** The connection dropped and a re-attach starts (`lost`), succeeded (`restored`) or gave up (`failed`). */
  onReconnect(state: "lost" | "restored" | "failed", why: string): void;
  /** How long to keep trying to re-attach after a drop (the server keeps the shell 60 s by default). */
  reconnectMs?: number;
  /** An argv to run instead of the login shell (protocol `command`). */
  command?: string[];
  /** With `command`: false runs it with pipes (framed stdout/stderr/stdin). */
  pty?: boolean;
  /**
   * Every input byte must arrive (an upload): input is kept until the server acknowledges it
   * (protocol `input_from` / `input_ack`) and sent again after a re-attach from where the shell is.
   */
  countInput?: boolean;
}

export type SessionEnd = { kind: "exit"; code: number } | { kind: "closed" } | { kind: "error"; error: CliError };

const TERM_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;

/**
 * One terminal session over protocol v1, across reconnects: after a drop or a 1012 it
 * re-attaches with `session` and `offset` (to the same --api URL; the load balancer picks the
 * node), so every output byte arrives once, in order.
 */
export class SessionClient {
  sessionId: string | null = null;
  /** Output offset just past the last byte received. */
  offset = 0;
  private readonly acks = new AckSchedule({
    everyBytes: ACK_EVERY,
    quietMs: ACK_QUIET_MS,
    send: (offset) => this.sendJson({ type: "ack", offset }),
    // Unref'd: an owed ack never keeps the process from exiting.
    setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
    clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
  });
  private ws: WebSocket | null = null;
  private open = false;
  private pendingInput: Buffer[] = [];
  private pendingBytes = 0;
  private ending = false;
  private lastError: { code: string; message: string } | null = null;
  private exit: number | null = null;
  private resolveEnd!: (e: SessionEnd) => void;
  readonly ended: Promise<SessionEnd>;
  private pingTimer: NodeJS.Timeout | null = null;
  private pongSeen = true;
  reconnects = 0;
  /** With countInput: what the server has not acknowledged, kept to send again (until a server shows it does not count). */
  private readonly counter: InputCounter | null;

  constructor(private readonly opts: SessionClientOptions) {
    this.ended = new Promise((resolve) => (this.resolveEnd = resolve));
    this.counter = opts.countInput ? new InputCounter() : null;
  }

  private url(): string {
    const base = new URL(this.opts.api.endsWith("/") ? this.opts.api : `${this.opts.api}/`);
    base.protocol = base.protocol === "https:" ? "wss:" : "ws:";
    const u = new URL(`workspaces/${this.opts.workspaceId}/terminal`, base);
    u.searchParams.set("cols", String(this.opts.cols));
    u.searchParams.set("rows", String(this.opts.rows));
    if (this.opts.term && TERM_PATTERN.test(this.opts.term)) u.searchParams.set("term", this.opts.term);
    if (this.sessionId) {
      u.searchParams.set("session", this.sessionId);
      u.searchParams.set("offset", String(this.offset));
    } else if (this.opts.command) {
      u.searchParams.set("command", JSON.stringify(this.opts.command));
      u.searchParams.set("pty", this.opts.pty === false ? "0" : "1");
    }
    if (this.counter?.active) u.searchParams.set("input_from", String(this.counter.acked));
    return u.toString();
  }

  /** Opens the session; resolves once the first hello arrived, rejects with the refusal otherwise. */
  async start(): Promise<void> {
    const r = await this.connect();
    if (r !== "open") throw r;
  }

  /**
   * One connection attempt: "open" after hello; a CliError when refused for good; "retry"
   * when the API could not be reached or answered 5xx (only worth retrying on a re-attach).
   */
  private connect(): Promise<"open" | "retry" | CliError> {
    return new Promise((resolve) => {
      let settled = false;
      const settle = (v: "open" | "retry" | CliError) => {
        if (!settled) {
          settled = true;
          resolve(v);
        }
      };
      const ws = new WebSocket(this.url(), [SUBPROTOCOL_V1], {
        headers: { authorization: `Bearer ${this.opts.token}`, "user-agent": this.opts.userAgent },
        perMessageDeflate: false,
        handshakeTimeout: 15_000,
      });
      this.ws = ws;
      ws.binaryType = "nodebuffer";
      ws.on("unexpected-response", (_req, res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body = (body + c).slice(0, 65536)));
        res.on("end", () => {
          const status = res.statusCode ?? 0;
          ws.terminate();
          if (status >= 500 || status === 0) return settle("retry");
          let code = `http_${status}`;
          let message = `the API refused the terminal (${status})`;
          try {
            const e = (JSON.parse(body) as { error?: { code?: unknown; message?: unknown } }).error;
            if (typeof e?.code === "string") code = e.code;
            if (typeof e?.message === "string") message = e.message;
          } catch {
            // not JSON: keep the status line
          }
          if (code === "unauthorized") message += " (log in again: molecule login)";
          settle(new CliError(message, 1, code));
        });
      });
      ws.on("error", (err) => {
        // Before the upgrade: the API cannot be reached. After: the close that follows decides.
        if (!this.open) settle(this.sessionId ? "retry" : new CliError(`cannot reach the API at ${this.opts.api}: ${(err as NodeJS.ErrnoException).code ?? err.message}`, 1, "network"));
      });
      ws.on("message", (data: Buffer, isBinary) => {
        if (isBinary) return this.output(data);
        let m: ServerMessage;
        try {
          m = serverMessage.parse(JSON.parse(data.toString("utf8")));
        } catch {
          return; // a message type this client does not know (additive to v1): ignored
        }
        if (m.type === "hello") {
          // Before any output of the new connection reaches the screen.
          if (this.sessionId) this.opts.onReconnect("restored", "");
          this.open = true;
          this.sessionId = m.session;
          this.offset = m.offset;
          this.acks.reset(m.offset);
          this.startPing(ws);
          // The size may have changed while we were away.
          this.sendJson({ type: "resize", cols: this.opts.cols, rows: this.opts.rows });
          // Counted: everything after the last ack goes again (the URL said input_from there). A
          // server that ignores input_from never acks (its hello has none): only what never went
          // out goes, and the rest of the session is uncounted.
          for (const b of this.counter?.active ? this.counter.hello(m.input_from) : []) {
            this.pendingInput.push(Buffer.from(b.buffer, b.byteOffset, b.length));
            this.pendingBytes += b.length;
          }
          this.flushPending();
          settle("open");
        } else if (m.type === "gap") {
          this.opts.onNotice(`output lost: bytes ${m.from}..${m.to} were older than the server's replay window`);
          this.offset = m.to;
          this.acks.consumed(m.to);
        } else if (m.type === "exit") {
          this.exit = exitCodeOf(m.code, m.signal);
        } else if (m.type === "error") {
          if (m.code !== "bad_message") this.lastError = { code: m.code, message: m.message };
        } else if (m.type === "pong") {
          this.pongSeen = true;
        } else if (m.type === "input_ack") {
          this.counter?.ack(m.offset);
        }
      });
      ws.on("close", (code, reason) => {
        this.acks.cancel();
        const wasOpen = this.open;
        this.open = false;
        this.stopPing();
        if (this.ws === ws) this.ws = null;
        if (!wasOpen) {
          // Closed before hello: a refusal after the upgrade (4404, 4409, 4503 …).
          if (this.sessionId && RESUMABLE.has(code)) return settle("retry");
          const e = this.lastError;
          this.lastError = null;
          return settle(new CliError(e?.message ?? (reason.toString() || `the terminal closed (${code})`), 1, e?.code ?? `close_${code}`));
        }
        void this.afterClose(code, reason.toString());
      });
    });
  }

  private async afterClose(code: number, reason: string): Promise<void> {
    if (this.exit !== null) return this.resolveEnd({ kind: "exit", code: this.exit });
    if (this.ending) return this.resolveEnd({ kind: "closed" });
    if (!RESUMABLE.has(code) || !this.sessionId) {
      const e = this.lastError;
      return this.resolveEnd({ kind: "error", error: new CliError(e?.message ?? (reason || `the terminal closed (${code})`), 1, e?.code ?? `close_${code}`) });
    }
    this.lastError = null;
    const why = code === 1012 ? "the API node is restarting" : "connection lost";
    this.opts.onReconnect("lost", why);
    const deadline = performance.now() + (this.opts.reconnectMs ?? 60_000);
    let delay = 100;
    for (;;) {
      if (this.ending) return this.resolveEnd({ kind: "closed" });
      const r = await this.connect();
      if (r === "open") {
        this.reconnects++;
        return;
      }
      if (r !== "retry") {
        this.opts.onReconnect("failed", r.message);
        return this.resolveEnd({ kind: "error", error: r.code === "session_not_found" ? new CliError("the session ended while disconnected", 1, r.code) : r });
      }
      if (performance.now() + delay > deadline) {
        this.opts.onReconnect("failed", "gave up");
        return this.resolveEnd({ kind: "error", error: new CliError(`could not reconnect to ${this.opts.api} within ${Math.round((this.opts.reconnectMs ?? 60_000) / 1000)} s`, 1, "network") });
      }
      await new Promise((res) => setTimeout(res, delay));
      delay = Math.min(delay * 2, 2000);
    }
  }

  private output(data: Buffer): void {
    this.offset += data.length;
    const end = this.offset;
    this.opts.onOutput(data, () => this.acks.consumed(end));
  }

  private sendJson(m: object): boolean {
    if (!this.open || this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(m));
    return true;
  }

  /**
   * Input: sent at once, or kept while disconnected and sent after the re-attach. Returns
   * false when the caller should stop reading its source until writable() resolves (a file
   * being uploaded must not pile up in memory); typed keys never get there.
   */
  input(data: Buffer): boolean {
    if (this.counter?.active) {
      // Kept until acknowledged: sent now if connected, else with the rest after the re-attach.
      const now = this.open && this.ws?.readyState === WebSocket.OPEN;
      this.counter.add(data, now);
      if (now) this.ws!.send(data, { binary: true });
      return this.counter.keptBytes < MAX_UNACKED && (this.ws?.bufferedAmount ?? 0) < HIGH_WATER;
    }
    if (this.open && this.ws?.readyState === WebSocket.OPEN && this.pendingBytes === 0) {
      this.ws.send(data, { binary: true });
      return this.ws.bufferedAmount < HIGH_WATER;
    }
    this.pendingInput.push(Buffer.from(data));
    this.pendingBytes += data.length;
    return this.pendingBytes < MAX_PENDING_INPUT;
  }

  /** Resolves once input may flow again: connected, and the socket's buffer drained below the low mark. */
  async writable(): Promise<void> {
    while (!this.ending && !(this.open && this.ws && this.pendingBytes === 0 && this.ws.bufferedAmount < LOW_WATER && (this.counter?.keptBytes ?? 0) < MAX_UNACKED / 2)) {
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** What waited goes out joined, in frames the server takes (its limit is 1 MiB a frame). */
  private flushPending(): void {
    const ws = this.ws;
    if (!ws) return;
    const all = Buffer.concat(this.pendingInput, this.pendingBytes);
    this.pendingInput = [];
    this.pendingBytes = 0;
    for (let at = 0; at < all.length; at += RESEND_FRAME) ws.send(all.subarray(at, at + RESEND_FRAME), { binary: true });
  }

  resize(cols: number, rows: number): void {
    this.opts.cols = Math.min(1000, Math.max(1, cols));
    this.opts.rows = Math.min(1000, Math.max(1, rows));
    this.sendJson({ type: "resize", cols: this.opts.cols, rows: this.opts.rows });
  }

  /** Ends the session (a close frame ends the shell on the server). */
  close(): void {
    this.ending = true;
    const ws = this.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return this.resolveEnd({ kind: "closed" });
    ws.close(1000);
    // A server that does not answer the close frame: do not hang.
    setTimeout(() => ws.terminate(), 2000).unref();
  }

  private startPing(ws: WebSocket): void {
    this.stopPing();
    this.pongSeen = true;
    this.pingTimer = setInterval(() => {
      // No pong for a whole period: the connection is dead without a FIN (a cut network).
      if (!this.pongSeen) return ws.terminate();
      this.pongSeen = false;
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "ping" }));
    }, PING_EVERY_MS);
    this.pingTimer.unref();
  }

  private stopPing(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
  }
}
