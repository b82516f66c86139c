import { describe, expect, it } from "vitest";
import { EscapeScanner, type EscapeAction } from "./escape.ts";

function run(chunks: string[]): (string | EscapeAction["kind"])[] {
  const s = new EscapeScanner("~");
  const out: (string | EscapeAction["kind"])[] = [];
  for (const c of chunks) for (const a of s.feed(Buffer.from(c))) out.push(a.kind === "send" ? a.bytes.toString() : a.kind);
  // Adjacent sends joined: only what reaches the remote and the actions matter.
  return out.reduce<(string | EscapeAction["kind"])[]>((acc, x) => {
    const last = acc[acc.length - 1];
    if (typeof x === "string" && typeof last === "string" && last !== "disconnect" && last !== "help") acc[acc.length - 1] = last + x;
    else acc.push(x);
    return acc;
  }, []);
}

describe("EscapeScanner", () => {
  it("~. at the start disconnects; nothing after it is sent", () => {
    expect(run(["~.ls\r"])).toEqual(["disconnect"]);
  });
  it("~. after a newline, split across chunks, disconnects after sending the line", () => {
    expect(run(["echo hi\r", "~", ".more"])).toEqual(["echo hi\r", "disconnect"]);
  });
  it("~ in the middle of a line is plain input", () => {
    expect(run(["cd ~.\r"])).toEqual(["cd ~.\r"]);
  });
  it("~? lists the escapes and sends nothing", () => {
    expect(run(["~?"])).toEqual(["help"]);
  });
  it("~~ sends one ~, and the line is no longer at its start", () => {
    expect(run(["~~.\r"])).toEqual(["~.\r"]);
  });
  it("~ and another byte sends both", () => {
    expect(run(["~x\r~", "y"])).toEqual(["~x\r~y"]);
  });
  it("another escape character can be chosen", () => {
    const s = new EscapeScanner("%");
    expect(s.feed(Buffer.from("~.")).map((a) => a.kind)).toEqual(["send"]);
    expect(s.feed(Buffer.from("\r%.")).map((a) => a.kind)).toEqual(["send", "disconnect"]);
  });
});
