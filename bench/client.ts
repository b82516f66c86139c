/**
 * The benchmark's own terminal client: protocol v1 (molecule.terminal.v1),
 * binary frames both ways, JSON control frames, acks. Written for speed: no
 * per-byte work and no buffer concatenation on the hot path; callers see each
 * output chunk once (`onData`) and wait on byte patterns or byte counts.
 */
import { AckSchedule } from "@molecule/shared/ack-schedule";
import WebSocket from "ws";

export const SUBPROTOCOL_V1 = "molecule.terminal.v1";

export interface ClientOptions {
  token?: string;
  cols?: number;
  rows?: number;
  /**
   * Ack policy, the Canvas Terminal tab's and the CLI's (AckSchedule): ack once this many
   * received bytes are unacknowledged (default 32 KiB), otherwise a second after the first
   * unacknowledged byte — not per echo. "manual": the caller acks (a slow consumer).
   */
  ack?: number | "manual";
}

interface Waiter {
  done(): boolean;
  resolve(): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export class BenchClient {
  readonly ws: WebSocket;
  /** performance.now() at construction, at the socket's open, at hello and at the first output byte. */
  readonly t0 = performance.now();
  tOpen = 0;
  tHello = 0;
  tFirstByte = 0;
  session: string | null = null;
  /** Output offset of the first byte this connection received (from hello). */
  base = 0;
  /** Output bytes received on this connection. */
  received = 0;
  /** Output offset acknowledged so far. */
  acked = 0;
  closeInfo: { code: number; reason: string } | null = null;
  errors: { code: string; message: string }[] = [];
  exit: { code: number | null; signal: unknown } | null = null;
  /** Sees every output chunk once, in order, with the stream offset of its first byte. */
  onData: ((chunk: Buffer, offset: number) => void) | null = null;
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly acks: AckSchedule | null;
  private waiters: Waiter[] = [];
  /** Last bytes received, for patterns that straddle two chunks. */
  private tail: Buffer = Buffer.alloc(0);
  private static readonly TAIL = 256;

  constructor(url: string, o: ClientOptions = {}) {
    const u = new URL(url);
    if (o.cols) u.searchParams.set("cols", String(o.cols));
    if (o.rows) u.searchParams.set("rows", String(o.rows));
    this.acks =
      o.ack === "manual"
        ? null
        : new AckSchedule({
            everyBytes: o.ack ?? 32 * 1024,
            quietMs: 1000,
            send: (offset) => this.ack(offset),
            // Unref'd: an owed ack never keeps a finished benchmark alive.
            setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
            clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
          });
    this.ws = new WebSocket(u, [SUBPROTOCOL_V1], {
      headers: o.token ? { authorization: `Bearer ${o.token}` } : {},
      perMessageDeflate: false,
    });
    this.ws.binaryType = "nodebuffer";
    this.closed = new Promise((resolve) => {
      this.ws.on("close", (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        this.acks?.cancel();
        const err = new Error(`socket closed ${code} ${reason.toString()} ${JSON.stringify(this.errors)}`);
        for (const w of this.waiters.splice(0)) {
          clearTimeout(w.timer);
          if (w.done()) w.resolve();
          else w.reject(err);
        }
        resolve(this.closeInfo);
      });
    });
    this.ws.on("error", (err) => {
      this.errors.push({ code: "socket", message: err.message });
    });
    this.ws.on("unexpected-response", (_req, res) => {
      this.errors.push({ code: `http_${res.statusCode}`, message: "refused" });
      res.resume();
      this.ws.terminate();
    });
    this.ws.on("open", () => (this.tOpen = performance.now()));
    this.ws.on("message", (data: Buffer, isBinary) => (isBinary ? this.output(data) : this.control(data)));
  }

  /** Stream offset just past the last byte received. */
  get offset(): number {
    return this.base + this.received;
  }

  private output(chunk: Buffer): void {
    const offset = this.offset;
    if (this.received === 0) this.tFirstByte = performance.now();
    this.received += chunk.length;
    this.onData?.(chunk, offset);
    if (this.waiters.length) this.checkWaiters(chunk);
    else this.keepTail(chunk);
    this.acks?.consumed(this.offset);
  }

  private control(data: Buffer): void {
    let m: { type?: string; [k: string]: unknown };
    try {
      m = JSON.parse(data.toString("utf8"));
    } catch {
      return;
    }
    if (m.type === "hello") {
      this.tHello = performance.now();
      this.session = String(m.session);
      this.base = Number(m.offset);
      this.acked = this.base;
      this.acks?.reset(this.base);
    } else if (m.type === "error") {
      this.errors.push({ code: String(m.code), message: String(m.message) });
    } else if (m.type === "exit") {
      this.exit = { code: (m.code as number | null) ?? null, signal: m.signal ?? null };
    } else if (m.type === "gap") {
      // A gap means lost bytes as far as the benchmark is concerned: record it.
      this.errors.push({ code: "gap", message: `${String(m.from)}..${String(m.to)}` });
      this.received += Number(m.to) - Number(m.from);
    }
  }

  private keepTail(chunk: Buffer): void {
    const n = BenchClient.TAIL;
    if (chunk.length >= n) this.tail = Buffer.from(chunk.subarray(chunk.length - n));
    else {
      const keep = Math.min(this.tail.length, n - chunk.length);
      this.tail = Buffer.concat([this.tail.subarray(this.tail.length - keep), chunk]);
    }
  }

  private matchers: { pat: Buffer; found: boolean }[] = [];

  private checkWaiters(chunk: Buffer): void {
    for (const m of this.matchers) {
      if (m.found) continue;
      if (chunk.indexOf(m.pat) >= 0) m.found = true;
      else if (m.pat.length > 1) {
        // Straddling the boundary: the previous tail plus the start of this chunk.
        const head = chunk.subarray(0, m.pat.length - 1);
        const edge = Buffer.concat([this.tail.subarray(Math.max(0, this.tail.length - (m.pat.length - 1))), head]);
        if (edge.indexOf(m.pat) >= 0) m.found = true;
      }
    }
    this.keepTail(chunk);
    const ready = this.waiters.filter((w) => w.done());
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => !ready.includes(w));
    for (const w of ready) {
      clearTimeout(w.timer);
      w.resolve();
    }
  }

  private wait(done: () => boolean, ms: number, what: string, cleanup = () => {}): Promise<void> {
    if (done()) {
      cleanup();
      return Promise.resolve();
    }
    if (this.closeInfo) return Promise.reject(new Error(`socket closed ${this.closeInfo.code} while waiting for ${what}`));
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        done,
        resolve: () => {
          cleanup();
          resolve();
        },
        reject: (err) => {
          cleanup();
          reject(err);
        },
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          w.reject(new Error(`timed out after ${ms} ms waiting for ${what}; tail=${JSON.stringify(this.tail.toString("latin1").slice(-120))}`));
        }, ms),
      };
      this.waiters.push(w);
    });
  }

  /** Resolves once the socket is open and the server said hello. */
  hello(ms = 15_000): Promise<void> {
    return this.wait(() => this.session !== null, ms, "hello");
  }

  /** Resolves when `n` output bytes in total have arrived on this connection. */
  waitBytes(n: number, ms = 15_000): Promise<void> {
    return this.wait(() => this.received >= n, ms, `${n} bytes`);
  }

  /** Resolves when `pattern` appears in output that arrives from now on. */
  waitFor(pattern: string | Buffer, ms = 15_000): Promise<void> {
    const m = { pat: typeof pattern === "string" ? Buffer.from(pattern) : pattern, found: false };
    this.matchers.push(m);
    return this.wait(() => m.found, ms, JSON.stringify(m.pat.toString("latin1")), () => {
      this.matchers = this.matchers.filter((x) => x !== m);
    });
  }

  /** Resolves once output has been quiet for `quietMs` (the prompt is drawn). */
  async settle(quietMs = 150, ms = 15_000): Promise<void> {
    const deadline = performance.now() + ms;
    for (;;) {
      const before = this.received;
      await new Promise((r) => setTimeout(r, quietMs));
      if (this.received === before && this.received > 0) return;
      if (performance.now() > deadline) throw new Error("output did not settle");
      if (this.closeInfo) throw new Error(`socket closed ${this.closeInfo.code}`);
    }
  }

  send(data: Buffer | string): void {
    this.ws.send(typeof data === "string" ? Buffer.from(data, "latin1") : data, { binary: true });
  }

  /** Acks up to `offset` (manual mode; the schedule calls it too). False when the socket is not open. */
  ack(offset = this.offset): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    if (offset <= this.acked) return true;
    this.acked = offset;
    this.ws.send(JSON.stringify({ type: "ack", offset }));
    return true;
  }

  resize(cols: number, rows: number): void {
    this.ws.send(JSON.stringify({ type: "resize", cols, rows }));
  }

  close(): Promise<{ code: number; reason: string }> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000);
    return this.closed;
  }

  /** Stops reading the socket (TCP backpressure reaches the server) / reads again. */
  pause(): void {
    this.ws.pause();
  }
  resume(): void {
    this.ws.resume();
  }
}
