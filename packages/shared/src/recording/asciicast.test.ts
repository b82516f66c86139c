import { describe, expect, it } from "vitest";
import { CastWriter, incompleteUtf8Tail } from "./asciicast.ts";

const header = { width: 80, height: 24, timestamp: 1_700_000_000, term: "xterm-256color", shell: "/bin/bash", title: "ws" };

function writer(maxBytes = 1 << 20) {
  const lines: string[] = [];
  const w = new CastWriter(header, { maxBytes, write: (l) => lines.push(l.toString()) });
  const events = () =>
    lines
      .join("")
      .split("\n")
      .filter(Boolean)
      .slice(1)
      .map((l) => JSON.parse(l) as [number, string, string]);
  return { w, lines, events };
}

describe("asciicast v2 writer", () => {
  it("writes the v2 header", () => {
    const { lines } = writer();
    expect(JSON.parse(lines[0]!)).toEqual({ version: 2, width: 80, height: 24, timestamp: 1_700_000_000, env: { TERM: "xterm-256color", SHELL: "/bin/bash" }, title: "ws" });
  });

  it("never splits a UTF-8 character between events, whatever the read boundaries", () => {
    const text = "héllo €uro 𝄞 clef ✓";
    const bytes = Buffer.from(text);
    for (let cut = 1; cut < bytes.length; cut++) {
      const { w, events } = writer();
      w.output(0.1, [bytes.subarray(0, cut)]);
      w.output(0.2, [bytes.subarray(cut)]);
      w.end(0.3);
      const ev = events();
      for (const e of ev) expect(e[2]).not.toContain("\uFFFD");
      expect(ev.map((e) => e[2]).join("")).toBe(text);
    }
  });

  it("reads that end mid-character within one flush are joined", () => {
    const b = Buffer.from("€");
    const { w, events } = writer();
    w.output(0.1, [b.subarray(0, 1), b.subarray(1, 2)]);
    expect(events()).toEqual([]);
    w.output(0.2, [b.subarray(2)]);
    expect(events()).toEqual([[0.2, "o", "€"]]);
  });

  it("finds incomplete tails exactly", () => {
    expect(incompleteUtf8Tail(Buffer.from("abc"))).toBe(0);
    expect(incompleteUtf8Tail(Buffer.from("€").subarray(0, 2))).toBe(2);
    expect(incompleteUtf8Tail(Buffer.from("𝄞").subarray(0, 3))).toBe(3);
    expect(incompleteUtf8Tail(Buffer.from("𝄞"))).toBe(0);
    expect(incompleteUtf8Tail(Buffer.from([0xff]))).toBe(0);
  });

  it("records resizes and input as their own events", () => {
    const { w, events } = writer();
    w.resize(1.5, 120, 40);
    w.input(2, Buffer.from("ls\r"));
    expect(events()).toEqual([
      [1.5, "r", "120x40"],
      [2, "i", "ls\r"],
    ]);
  });

  it("stops at the size cap and says so in the file, once", () => {
    const { w, lines, events } = writer(1024);
    for (let i = 0; i < 100; i++) w.output(i / 10, [Buffer.from(`line ${i} ${"x".repeat(40)}\r\n`)]);
    const total = Buffer.byteLength(lines.join(""));
    expect(w.truncated).toBe(true);
    expect(total).toBe(w.bytes);
    const ev = events();
    const markers = ev.filter((e) => e[1] === "m");
    expect(markers).toHaveLength(1);
    expect(ev[ev.length - 1]![1]).toBe("m");
    expect(markers[0]![2]).toMatch(/truncated/);
    // Everything before the cap is there, with times in order.
    const times = ev.map((e) => e[0]);
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    expect(total - Buffer.byteLength(lines[lines.length - 1]!)).toBeLessThanOrEqual(1024);
  });
});

describe("tape (what the worker stores) to asciicast v2 (what the API serves)", () => {
  it("gives the same events as writing the cast directly, however the tape is cut into reads", async () => {
    const { TapeWriter, TapeToCast } = await import("./tape.ts");
    const chunks: Buffer[] = [];
    const tape = new TapeWriter(header, { maxBytes: 1 << 20, write: (b) => chunks.push(Buffer.from(b)) });
    const text = Buffer.from("héllo €uro 𝄞 ✓\r\n\x1b[31mred\x1b[0m \"quoted\" back\\slash\r\n");
    // Output split in the middle of characters, a resize, input.
    tape.output(0.5, [text.subarray(0, 2), text.subarray(2, 13)]);
    tape.resize(0.75, 100, 30);
    tape.output(1, [text.subarray(13)]);
    tape.input(1.25, Buffer.from("ls\r"));
    const all = Buffer.concat(chunks);
    for (const step of [1, 7, 13, all.length]) {
      const conv = new TapeToCast();
      const out: Buffer[] = [];
      for (let i = 0; i < all.length; i += step) out.push(conv.push(Buffer.from(all.subarray(i, i + step))));
      out.push(conv.end());
      const lines = Buffer.concat(out).toString().split("\n").filter(Boolean);
      expect(JSON.parse(lines[0]!)).toEqual({ version: 2, width: 80, height: 24, timestamp: 1_700_000_000, env: { TERM: "xterm-256color", SHELL: "/bin/bash" }, title: "ws" });
      const ev = lines.slice(1).map((l) => JSON.parse(l) as [number, string, string]);
      expect(ev.filter((e) => e[1] === "o").map((e) => e[2]).join("")).toBe(text.toString());
      expect(ev.filter((e) => e[1] === "o").every((e) => !e[2].includes("\uFFFD"))).toBe(true);
      expect(ev.find((e) => e[1] === "r")).toEqual([0.75, "r", "100x30"]);
      expect(ev.find((e) => e[1] === "i")).toEqual([1.25, "i", "ls\r"]);
    }
  });

  it("stops at the cap with a marker record that the cast shows as an m event", async () => {
    const { TapeWriter, TapeToCast } = await import("./tape.ts");
    const chunks: Buffer[] = [];
    const tape = new TapeWriter(header, { maxBytes: 2048, write: (b) => chunks.push(b) });
    for (let i = 0; i < 100; i++) tape.output(i / 10, [Buffer.from(`line ${i} ${"x".repeat(40)}\r\n`)]);
    expect(tape.truncated).toBe(true);
    const stored = Buffer.concat(chunks);
    expect(stored.length).toBe(tape.bytes);
    expect(stored.length).toBeLessThanOrEqual(2048 + 200);
    const conv = new TapeToCast();
    const cast = Buffer.concat([conv.push(stored), conv.end()]).toString();
    const ev = cast.split("\n").filter(Boolean).slice(1).map((l) => JSON.parse(l) as [number, string, string]);
    expect(ev.at(-1)![1]).toBe("m");
    expect(ev.at(-1)![2]).toMatch(/truncated.*2048/);
    expect(ev.filter((e) => e[1] === "m")).toHaveLength(1);
  });
});
