import { describe, expect, it } from "vitest";
import { CLOSE, SUBPROTOCOL_V1 } from "@molecule/shared/protocol-constants";
import { describeClose } from "./close-codes.ts";
import { TerminalConnection, TicketError, type ConnectionState, type SocketLike, type Timers } from "./connection.ts";

/** A socket the test plays the server side of. */
class FakeSocket implements SocketLike {
  binaryType: BinaryType = "blob";
  readyState = 0;
  sent: (string | Uint8Array)[] = [];
  closedWith: { code?: number; reason?: string } | null = null;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  constructor(
    readonly url: string,
    readonly protocol: string,
  ) {}
  send(data: string | ArrayBuffer | Uint8Array): void {
    this.sent.push(typeof data === "string" ? data : new Uint8Array(data as ArrayBuffer));
  }
  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 2;
  }
  // server side
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  json(m: object): void {
    this.onmessage?.({ data: JSON.stringify(m) });
  }
  bytes(s: string | Uint8Array): void {
    const b = typeof s === "string" ? new TextEncoder().encode(s) : s;
    this.onmessage?.({ data: b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) });
  }
  /** A server's hello; with `inputFrom`, one that counts input (an older one sends none). */
  hello(session: string, offset: number, cols = 80, rows = 24, inputFrom?: number): void {
    this.open();
    this.json({ type: "hello", session, offset, cols, rows, ...(inputFrom === undefined ? {} : { input_from: inputFrom }) });
  }
  drop(code = 1006): void {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
  }
  get query(): URLSearchParams {
    return new URL(this.url).searchParams;
  }
  messages(): Record<string, unknown>[] {
    return this.sent.filter((s): s is string => typeof s === "string").map((s) => JSON.parse(s) as Record<string, unknown>);
  }
  acks(): number[] {
    return this.messages().filter((m) => m.type === "ack").map((m) => m.offset as number);
  }
  input(): string {
    return this.sent.filter((s): s is Uint8Array => typeof s !== "string").map((b) => new TextDecoder().decode(b)).join("");
  }
}

/** Manual clock: timers run only when the test advances time. */
class FakeTimers implements Timers {
  t = 0;
  private seq = 0;
  private tasks = new Map<number, { at: number; fn: () => void; every?: number }>();
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.tasks.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(id: unknown): void {
    this.tasks.delete(id as number);
  }
  setInterval(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.tasks.set(id, { at: this.t + ms, fn, every: ms });
    return id;
  }
  clearInterval(id: unknown): void {
    this.tasks.delete(id as number);
  }
  now(): number {
    return this.t;
  }
  /** Delay of the next pending one-shot timer. */
  nextDelay(): number | null {
    const one = [...this.tasks.values()].filter((x) => x.every === undefined).sort((a, b) => a.at - b.at)[0];
    return one ? one.at - this.t : null;
  }
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      const next = [...this.tasks.entries()].sort((a, b) => a[1].at - b[1].at)[0];
      if (!next || next[1].at > end) break;
      const [id, task] = next;
      this.t = task.at;
      if (task.every) task.at += task.every;
      else this.tasks.delete(id);
      task.fn();
      await flush();
    }
    this.t = end;
    await flush();
  }
}

const flush = () => new Promise<void>((r) => setTimeout(r, 0));

const SID = "6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b";

function setup(o: { ticket?: () => Promise<string>; autoConsume?: boolean; watch?: string } = {}) {
  const sockets: FakeSocket[] = [];
  const states: ConnectionState[] = [];
  const output: { text: string; end: number }[] = [];
  const gaps: [number, number][] = [];
  let newSessions = 0;
  let tickets = 0;
  const timers = new FakeTimers();
  const conn: TerminalConnection = new TerminalConnection(
    {
      endpoint: "ws://lb.test/workspaces/w1/terminal",
      ticket: o.ticket ?? (async () => `tkt_${++tickets}`),
      socket: (url, protocol) => {
        const s = new FakeSocket(url, protocol);
        sockets.push(s);
        return s;
      },
      timers,
      random: () => 0.5,
      ...(o.watch ? { watch: o.watch } : {}),
    },
    {
      output: (data, end) => {
        output.push({ text: new TextDecoder().decode(data), end });
        if (o.autoConsume !== false) conn.consumed(end);
      },
      gap: (from, to) => {
        gaps.push([from, to]);
        conn.consumed(to);
      },
      state: (s) => states.push(s),
      newSession: () => newSessions++,
    },
    { cols: 100, rows: 30 },
  );
  const last = () => sockets[sockets.length - 1]!;
  return { conn, sockets, last, states, output, gaps, timers, newSessions: () => newSessions, text: () => output.map((x) => x.text).join("") };
}

async function connected(t: ReturnType<typeof setup>, offset = 0, size = { cols: 100, rows: 30 }) {
  t.conn.start();
  await flush();
  t.last().hello(SID, offset, size.cols, size.rows);
}

describe("TerminalConnection: opening", () => {
  it("gets a ticket and opens the v1 socket with ticket and size, no session", async () => {
    const t = setup();
    t.conn.start();
    expect(t.states.at(-1)).toEqual({ kind: "connecting", attempt: 0 });
    await flush();
    const s = t.last();
    expect(s.protocol).toBe(SUBPROTOCOL_V1);
    expect(s.binaryType).toBe("arraybuffer");
    expect(s.url.startsWith("ws://lb.test/workspaces/w1/terminal?")).toBe(true);
    expect(Object.fromEntries(s.query)).toEqual({ ticket: "tkt_1", cols: "100", rows: "30", input_from: "0" });
    s.hello(SID, 0, 100, 30);
    expect(t.states.at(-1)).toEqual({ kind: "open", session: SID });
    expect(t.conn.session).toBe(SID);
    // The server already has our size: no resize message.
    expect(s.messages().filter((m) => m.type === "resize")).toEqual([]);
  });

  it("keeps keystrokes typed before hello and sends them, in order, after it", async () => {
    const t = setup();
    t.conn.start();
    t.conn.send("ec");
    await flush();
    t.conn.send("ho hi\r");
    expect(t.last().input()).toBe("");
    t.last().hello(SID, 0, 100, 30);
    expect(t.last().input()).toBe("echo hi\r");
    t.conn.send("x");
    expect(t.last().input()).toBe("echo hi\rx");
    // Input is binary frames, never text (text frames are protocol messages).
    expect(t.last().sent.filter((f) => typeof f !== "string").length).toBe(3);
  });

  it("sends resize when the panel size differs from the server's, and on every change", async () => {
    const t = setup();
    await connected(t, 0, { cols: 80, rows: 24 });
    expect(t.last().messages().filter((m) => m.type === "resize")).toEqual([{ type: "resize", cols: 100, rows: 30 }]);
    t.conn.resize(120, 40);
    t.conn.resize(120, 40);
    expect(t.last().messages().filter((m) => m.type === "resize")).toEqual([
      { type: "resize", cols: 100, rows: 30 },
      { type: "resize", cols: 120, rows: 40 },
    ]);
  });

  it("pings while open, so idle sockets survive load balancer timeouts", async () => {
    const t = setup();
    await connected(t);
    await t.timers.advance(60_000);
    expect(t.last().messages().filter((m) => m.type === "ping").length).toBe(2);
    t.last().json({ type: "pong" });
    expect(t.states.at(-1)!.kind).toBe("open");
  });
});

describe("TerminalConnection: output and acks", () => {
  it("hands output over with its end offset and acks it once output has been quiet for a second, not per echo", async () => {
    const t = setup();
    await connected(t);
    t.last().bytes("hello ");
    t.last().bytes("world");
    expect(t.output).toEqual([
      { text: "hello ", end: 6 },
      { text: "world", end: 11 },
    ]);
    expect(t.conn.received).toBe(11);
    // Typing: an echo a keystroke, none of them acked on its own (a frame and a server wake-up each).
    for (let i = 0; i < 50; i++) t.last().bytes("x");
    await t.timers.advance(999);
    expect(t.last().acks()).toEqual([]);
    await t.timers.advance(1);
    expect(t.last().acks()).toEqual([61]);
    // Quiet: nothing more is owed, nothing more is sent.
    await t.timers.advance(5000);
    expect(t.last().acks()).toEqual([61]);
  });

  it("acks at once when 32 KiB are consumed, and a re-attach owes nothing from before its hello", async () => {
    const t = setup();
    await connected(t);
    t.last().bytes(new Uint8Array(32 * 1024).fill(0x61));
    expect(t.last().acks()).toEqual([32 * 1024]);
    const first = t.last();
    first.bytes("tail");
    first.drop(1006);
    await t.timers.advance(250);
    const second = t.last();
    expect(second).not.toBe(first);
    second.hello(SID, 32 * 1024 + 4, 100, 30);
    await t.timers.advance(5000);
    expect(first.acks()).toEqual([32 * 1024]);
    expect(second.acks()).toEqual([]);
  });

  it("under a flood (yes) acks at least every 64 KiB consumed, and only what was consumed", async () => {
    const t = setup({ autoConsume: false });
    await connected(t);
    const chunk = new Uint8Array(4096).fill(0x79);
    for (let i = 0; i < 256; i++) t.last().bytes(chunk); // 1 MiB arrives before the consumer catches up
    expect(t.last().acks()).toEqual([]);
    // The consumer (xterm's write callbacks) works through it chunk by chunk.
    for (const o of t.output) t.conn.consumed(o.end);
    const acks = t.last().acks();
    expect(acks.at(-1)).toBe(256 * 4096);
    let prev = 0;
    for (const a of acks) {
      expect(a).toBeGreaterThan(prev);
      expect(a - prev).toBeLessThanOrEqual(64 * 1024);
      prev = a;
    }
    // Not one ack per chunk either.
    expect(acks.length).toBeLessThan(64);
  });

  it("a gap moves the offset on, is reported, and is acked once shown", async () => {
    const t = setup();
    await connected(t);
    t.last().bytes("abc");
    t.last().json({ type: "gap", from: 3, to: 1000 });
    t.last().bytes("xyz");
    expect(t.gaps).toEqual([[3, 1000]]);
    expect(t.conn.received).toBe(1003);
    expect(t.output.at(-1)).toEqual({ text: "xyz", end: 1003 });
    await t.timers.advance(1000);
    expect(t.last().acks()).toEqual([1003]);
  });

  it("a bad_message error does not end anything", async () => {
    const t = setup();
    await connected(t);
    t.last().json({ type: "error", code: "bad_message", message: "unknown message type" });
    t.last().bytes("still here");
    expect(t.states.at(-1)!.kind).toBe("open");
  });
});

describe("TerminalConnection: re-attach", () => {
  it("after a drop (1006): reconnecting, then a fresh ticket with session + offset; nothing lost or repeated", async () => {
    const t = setup();
    await connected(t);
    const first = t.last();
    first.bytes("before-drop\r\n");
    first.drop(1006);
    expect(t.states.at(-1)).toMatchObject({ kind: "reconnecting", attempt: 1, because: "The connection was lost" });
    t.conn.send("typed-while-away\r");
    expect(t.sockets.length).toBe(1);
    await t.timers.advance(250);
    const second = t.last();
    expect(second).not.toBe(first);
    expect(Object.fromEntries(second.query)).toEqual({ ticket: "tkt_2", cols: "100", rows: "30", session: SID, offset: "13" });
    second.hello(SID, 13, 100, 30);
    second.bytes("after\r\n");
    expect(t.text()).toBe("before-drop\r\nafter\r\n");
    expect(second.input()).toBe("typed-while-away\r");
    expect(t.states.at(-1)).toEqual({ kind: "open", session: SID });
    // The new connection's window counts from 13: the next ack is for the new bytes.
    await t.timers.advance(1000);
    expect(second.acks()).toEqual([20]);
    // The dropped socket is never closed with a close frame (that would end the shell).
    expect(first.closedWith).toBeNull();
  });

  it("after 1012 (node restarting) it re-attaches the same way", async () => {
    const t = setup();
    await connected(t);
    t.last().bytes("12345");
    t.last().json({ type: "error", code: "restarting", message: "this API node is restarting" });
    t.last().drop(CLOSE.restarting);
    expect(t.states.at(-1)).toMatchObject({ kind: "reconnecting", because: "The API node is restarting" });
    await t.timers.advance(300);
    expect(t.last().query.get("session")).toBe(SID);
    expect(t.last().query.get("offset")).toBe("5");
  });

  it("backs off between failed attempts and gives up after the resume window", async () => {
    const t = setup();
    await connected(t);
    t.last().drop(1006);
    const delays: number[] = [];
    for (let i = 0; i < 30 && t.states.at(-1)!.kind === "reconnecting"; i++) {
      const d = t.timers.nextDelay()!;
      delays.push(d);
      await t.timers.advance(d);
      t.last().drop(1006); // the upgrade fails again
    }
    expect(delays.slice(0, 6)).toEqual([250, 500, 1000, 2000, 4000, 4000]);
    const end = t.states.at(-1)!;
    expect(end.kind).toBe("ended");
    if (end.kind !== "ended") return;
    expect(end.code).toBe(1006);
    expect(end.message).toContain("could not reconnect within 60 s");
    expect(t.timers.now()).toBeGreaterThanOrEqual(60_000);
    expect(t.timers.now()).toBeLessThan(60_000 + 5000);
  });

  it("Retry now skips the wait, but never opens a second socket beside an attempt under way", async () => {
    const t = setup();
    await connected(t);
    t.last().drop(1006);
    await t.timers.advance(100); // still waiting (250 ms)
    t.conn.retryNow();
    await flush();
    expect(t.sockets.length).toBe(2);
    t.conn.retryNow(); // the attempt is under way
    t.conn.retryNow();
    await t.timers.advance(10_000);
    expect(t.sockets.length).toBe(2);
    t.last().hello(SID, 0, 100, 30);
    expect(t.states.at(-1)!.kind).toBe("open");
  });

  it("retries when the ticket request fails for a while (the LB found no node yet)", async () => {
    let fail = 2;
    let n = 0;
    const t = setup({
      ticket: async () => {
        if (fail-- > 0) throw new TicketError("HTTP 503", false);
        return `tkt_ok${++n}`;
      },
    });
    t.conn.start();
    await flush();
    expect(t.sockets.length).toBe(0);
    expect(t.states.at(-1)).toMatchObject({ kind: "reconnecting", because: "could not get a ticket: HTTP 503" });
    await t.timers.advance(250);
    await t.timers.advance(500);
    expect(t.sockets.length).toBe(1);
    expect(t.last().query.get("ticket")).toBe("tkt_ok1");
  });

  it("a fatal ticket error (token revoked, workspace gone) ends at once", async () => {
    const t = setup({ ticket: async () => Promise.reject(new TicketError("workspace not found", true)) });
    t.conn.start();
    await flush();
    expect(t.states.at(-1)).toMatchObject({ kind: "ended", message: "workspace not found" });
  });

  it("4404 on re-attach is a real end: Reconnect starts a new session from offset 0", async () => {
    const t = setup();
    await connected(t);
    t.last().bytes("old");
    t.last().drop(1006);
    await t.timers.advance(250);
    t.last().open();
    t.last().json({ type: "error", code: "session_not_found", message: "no such session" });
    t.last().drop(CLOSE.session_not_found);
    const end = t.states.at(-1)!;
    expect(end).toMatchObject({ kind: "ended", code: 4404, message: "no such session" });
    expect(t.conn.session).toBeNull();
    await t.timers.advance(120_000);
    expect(t.sockets.length).toBe(2);
    t.conn.restart();
    expect(t.newSessions()).toBe(1);
    await flush();
    expect(t.last().query.has("session")).toBe(false);
    expect(t.last().query.has("offset")).toBe(false);
    t.last().hello("7a1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b", 0, 100, 30);
    t.last().bytes("new");
    expect(t.output.at(-1)).toEqual({ text: "new", end: 3 });
  });
});

describe("TerminalConnection: real ends", () => {
  it("exit then 1000: ended with the exit code, no reconnect", async () => {
    const t = setup();
    await connected(t);
    t.last().json({ type: "exit", code: 3, signal: null });
    t.last().drop(1000);
    expect(t.states.at(-1)).toMatchObject({ kind: "ended", code: 1000, exit: { code: 3, signal: null } });
    await t.timers.advance(10_000);
    expect(t.sockets.length).toBe(1);
  });

  it.each([
    [CLOSE.not_ready, "not_ready", /not ready/],
    [CLOSE.no_capacity, "no_capacity", /No capacity/],
    [CLOSE.worker_lost, "worker_lost", /Worker lost/],
    [CLOSE.idle_timeout, "idle_timeout", /idle timeout/],
    [CLOSE.session_expired, "session_expired", /maximum session length/],
    [CLOSE.eic_wiring_incomplete, "eic_wiring_incomplete", /EIC wiring incomplete/],
  ])("close %i (%s) ends with its meaning in words and the server's message", async (code, errCode, title) => {
    const t = setup();
    await connected(t);
    t.last().json({ type: "error", code: errCode, message: `server says ${errCode}` });
    t.last().drop(code);
    const end = t.states.at(-1)!;
    expect(end.kind).toBe("ended");
    if (end.kind !== "ended") return;
    expect(end.meaning.title).toMatch(title);
    expect(end.message).toBe(`server says ${errCode}`);
    expect(end.meaning.resumable).toBe(false);
  });

  it("dispose closes with a close frame (which ends the shell) and never reconnects", async () => {
    const t = setup();
    await connected(t);
    const s = t.last();
    t.conn.dispose();
    expect(s.closedWith).toEqual({ code: 1000, reason: "closed" });
    await t.timers.advance(60_000);
    expect(t.sockets.length).toBe(1);
  });
});

describe("describeClose", () => {
  it("words for every protocol close code; EIC links to the setup doc", () => {
    for (const code of Object.values(CLOSE)) {
      expect(describeClose(code).title).not.toMatch(/code \d+/);
    }
    expect(describeClose(CLOSE.eic_wiring_incomplete).link?.href).toBe("/docs/infra/workspace-terminal.md");
    expect(describeClose(1006).resumable).toBe(true);
    expect(describeClose(CLOSE.restarting).resumable).toBe(true);
    expect(describeClose(CLOSE.worker_lost).resumable).toBe(false);
    expect(describeClose(4999).title).toBe("The connection closed (code 4999)");
  });
});

describe("TerminalConnection: counted input", () => {
  it("keys sent and not yet acknowledged go again after a re-attach, from the last ack; keys typed while away after them", async () => {
    const t = setup();
    t.conn.start();
    await flush();
    t.last().hello(SID, 0, 100, 30, 0);
    const first = t.last();
    t.conn.send("ls");
    first.json({ type: "input_ack", offset: 2 });
    // In flight when the node died: sent, never acknowledged.
    t.conn.send(" -la");
    first.drop(1006);
    t.conn.send("\r");
    await t.timers.advance(250);
    const second = t.last();
    expect(second.query.get("input_from")).toBe("2");
    second.hello(SID, 0, 100, 30, 2);
    // The worker drops whatever of it the shell already has: each key reaches it once.
    expect(second.input()).toBe(" -la\r");
    // Acked up to the space: what is after it goes again on the next re-attach, nothing before.
    second.json({ type: "input_ack", offset: 3 });
    second.drop(1006);
    await t.timers.advance(250);
    expect(t.last().query.get("input_from")).toBe("3");
    t.last().hello(SID, 0, 100, 30, 3);
    expect(t.last().input()).toBe("-la\r");
  });

  it("a server that does not count (no input_from in hello): what never went out is sent once, and counting stops", async () => {
    const t = setup();
    t.conn.start();
    t.conn.send("typed-early");
    await flush();
    t.last().hello(SID, 0, 100, 30);
    expect(t.last().input()).toBe("typed-early");
    t.conn.send("x");
    t.last().drop(1006);
    t.conn.send("y");
    await t.timers.advance(250);
    expect(t.last().query.get("input_from")).toBeNull();
    t.last().hello(SID, 0, 100, 30);
    // As before counted input: what was typed while away, not what the old connection sent.
    expect(t.last().input()).toBe("y");
  });

  it("a new session after a real end counts from 0 again", async () => {
    const t = setup();
    t.conn.start();
    await flush();
    t.last().hello(SID, 0, 100, 30, 0);
    t.conn.send("abc");
    t.last().json({ type: "input_ack", offset: 3 });
    t.last().json({ type: "exit", code: 0, signal: null });
    t.last().drop(1000);
    expect(t.states.at(-1)).toMatchObject({ kind: "ended" });
    t.conn.restart();
    await flush();
    expect(t.last().query.get("input_from")).toBe("0");
    expect(t.last().query.get("session")).toBeNull();
  });

  it("a viewer sends no input, so it counts none (the server refuses input_from from a viewer)", async () => {
    const t = setup({ watch: SID });
    t.conn.start();
    await flush();
    expect(Object.fromEntries(t.last().query)).toEqual({ ticket: "tkt_1", cols: "100", rows: "30", session: SID, offset: "0", mode: "view" });
  });
});
