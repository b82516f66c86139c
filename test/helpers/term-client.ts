import WebSocket from "ws";
import { SUBPROTOCOL_V1, type ServerMessage } from "@molecule/shared";

export interface ConnectOptions {
  token?: string;
  ticket?: string;
  mode?: "v1" | "raw";
  cols?: number;
  rows?: number;
  session?: string;
  offset?: number;
  /** The client's TERM for a new session (protocol `term`). */
  term?: string;
  /** An argv to run instead of the login shell (protocol `command`). */
  command?: string[];
  /** Attach to `session` as a read-only viewer (mode=view). */
  view?: boolean;
  /** Ack output as soon as it arrives (a fast client). Off: the test acks by itself. */
  autoAck?: boolean;
  origin?: string;
}

export interface Refusal {
  status: number;
  body: any;
}

/** A terminal client speaking the protocol exactly as an outside client would. */
export class TermClient {
  readonly ws: WebSocket;
  /** Every output byte received, in order. */
  output = Buffer.alloc(0);
  /** Output offset of output[0] (from hello). */
  base = 0;
  messages: ServerMessage[] = [];
  hello: Extract<ServerMessage, { type: "hello" }> | null = null;
  closed: Promise<{ code: number; reason: string }>;
  opened: Promise<void>;
  refused: Promise<Refusal | null>;
  closeInfo: { code: number; reason: string } | null = null;
  private waiters: (() => void)[] = [];
  private chunks: Buffer[] = [];
  private chunkBytes = 0;
  autoAck: boolean;

  constructor(
    wsBase: string,
    workspaceId: string,
    readonly o: ConnectOptions = {},
  ) {
    const q = new URLSearchParams();
    if (o.cols) q.set("cols", String(o.cols));
    if (o.rows) q.set("rows", String(o.rows));
    if (o.session) q.set("session", o.session);
    if (o.term) q.set("term", o.term);
    if (o.command) q.set("command", JSON.stringify(o.command));
    if (o.offset !== undefined) q.set("offset", String(o.offset));
    if (o.ticket) q.set("ticket", o.ticket);
    if (o.view) q.set("mode", "view");
    const headers: Record<string, string> = {};
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    if (o.origin) headers.origin = o.origin;
    const url = `${wsBase}/workspaces/${workspaceId}/terminal${q.size ? `?${q}` : ""}`;
    this.autoAck = o.autoAck ?? true;
    this.ws = new WebSocket(url, (o.mode ?? "v1") === "v1" ? [SUBPROTOCOL_V1] : [], { headers, perMessageDeflate: false });
    this.refused = new Promise((resolve) => {
      this.ws.on("unexpected-response", (_req, res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => {
          let parsed: unknown = body;
          try {
            parsed = JSON.parse(body);
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      });
      this.ws.on("open", () => resolve(null));
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.on("open", () => resolve());
      this.ws.on("error", reject);
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.ws.on("close", (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        this.notify();
        resolve(this.closeInfo);
      });
    });
    this.ws.on("error", () => {});
    this.ws.on("message", (data: Buffer, isBinary) => {
      if (isBinary) {
        this.chunks.push(data);
        this.chunkBytes += data.length;
        if (this.autoAck && this.mode === "v1") this.ack();
      } else if (this.mode === "v1") {
        const m = JSON.parse(data.toString()) as ServerMessage;
        this.messages.push(m);
        if (m.type === "hello") {
          this.hello = m;
          this.base = m.offset;
        }
        if (m.type === "gap") {
          // The bytes after a gap start at `to`: record the hole so offsets stay right.
          this.flatten();
          this.gaps.push({ at: this.output.length, from: m.from, to: m.to });
        }
      } else {
        this.chunks.push(Buffer.from(data));
        this.chunkBytes += data.length;
      }
      this.notify();
    });
  }

  gaps: { at: number; from: number; to: number }[] = [];

  get mode(): "v1" | "raw" {
    return this.o.mode ?? "v1";
  }

  private flatten(): void {
    if (this.chunks.length) {
      this.output = Buffer.concat([this.output, ...this.chunks]);
      this.chunks = [];
    }
  }

  /** All output as text. */
  text(): string {
    this.flatten();
    return this.output.toString("utf8");
  }

  /** Output offset just past the last byte received. */
  get offset(): number {
    this.flatten();
    const skipped = this.gaps.reduce((s, g) => s + (g.to - g.from), 0);
    return this.base + this.output.length + skipped;
  }

  get received(): number {
    return this.output.length + this.chunkBytes;
  }

  ack(offset = this.offset): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "ack", offset }));
  }

  send(s: string | Buffer): void {
    this.ws.send(typeof s === "string" ? Buffer.from(s) : s, { binary: this.mode === "v1" });
  }

  sendText(s: string): void {
    this.ws.send(s);
  }

  resize(cols: number, rows: number): void {
    this.ws.send(JSON.stringify({ type: "resize", cols, rows }));
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Waits until `pred` holds (checked on every message) or throws after `ms`. */
  async until(pred: () => boolean, ms = 10_000, what = "condition"): Promise<void> {
    const deadline = performance.now() + ms;
    while (!pred()) {
      if (performance.now() > deadline) {
        throw new Error(`timed out waiting for ${what}; close=${JSON.stringify(this.closeInfo)} messages=${JSON.stringify(this.messages.slice(-5))} tail=${JSON.stringify(this.text().slice(-300))}`);
      }
      if (this.closeInfo && !pred()) {
        throw new Error(`socket closed (${JSON.stringify(this.closeInfo)}) while waiting for ${what}; tail=${JSON.stringify(this.text().slice(-300))}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(200, Math.max(1, deadline - performance.now())));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async waitText(match: string | RegExp, ms = 10_000, from = 0): Promise<void> {
    const ok = () => {
      const t = this.text().slice(from);
      return typeof match === "string" ? t.includes(match) : match.test(t);
    };
    await this.until(ok, ms, `output ${String(match)}`);
  }

  async waitMessage<T extends ServerMessage["type"]>(type: T, ms = 10_000): Promise<Extract<ServerMessage, { type: T }>> {
    await this.until(() => this.messages.some((m) => m.type === type), ms, `message ${type}`);
    return this.messages.find((m) => m.type === type) as Extract<ServerMessage, { type: T }>;
  }

  /** Runs a command and resolves with what it printed between two markers. */
  async run(cmd: string, ms = 10_000): Promise<string> {
    const tag = Math.random().toString(36).slice(2, 8);
    const from = this.text().length;
    // The markers are built by the shell (printf), so the echo of the command line never matches them.
    this.send(`printf '%s\\n' "<<$((1))${tag}"; ${cmd}; printf '%s\\n' "$((2))${tag}>>"\r`);
    const re = new RegExp(`<<1${tag}\\r?\\n([\\s\\S]*?)2${tag}>>`);
    await this.waitText(re, ms, from);
    return re.exec(this.text().slice(from))![1]!.replace(/\r\n/g, "\n");
  }

  close(code = 1000): Promise<{ code: number; reason: string }> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code);
    return this.closed;
  }

  /** Drops the connection without a close frame (as a network loss would). */
  drop(): void {
    this.ws.terminate();
  }
}

/** Opens a terminal and waits for its hello (`helloMs`: many opens at once on a loaded machine take longer). */
export async function openShell(wsBase: string, workspaceId: string, o: ConnectOptions & { helloMs?: number } = {}): Promise<TermClient> {
  const c = new TermClient(wsBase, workspaceId, o);
  const refusal = await c.refused;
  if (refusal) throw new Error(`refused: ${refusal.status} ${JSON.stringify(refusal.body)}`);
  if (c.mode === "v1") await c.waitMessage("hello", o.helloMs);
  return c;
}
