import { describe, expect, it } from "vitest";
import { EscapeScanner } from "./escape.ts";

/** What the scanner makes of the chunks: sent bytes joined up, actions as "<disconnect>" / "<help>". */
function run(chunks: string[]): string[] {
  const s = new EscapeScanner("~");
  const out: string[] = [];
  let text = "";
  for (const c of chunks) {
    for (const a of s.feed(Buffer.from(c))) {
      if (a.kind === "send") text += a.bytes.toString();
      else {
        if (text) out.push(text);
        text = "";
        out.push(`<${a.kind}>`);
      }
    }
  }
  if (text) out.push(text);
  return out;
}

describe("EscapeScanner", () => {
  it("~. at the start disconnects; nothing after it is sent", () => {
    expect(run(["~.ls\r"])).toEqual(["<disconnect>"]);
  });
  it("~. after a newline, split across chunks, disconnects after sending the line", () => {
    expect(run(["echo hi\r", "~", ".more"])).toEqual(["echo hi\r", "<disconnect>"]);
  });
  it("~ in the middle of a line is plain input", () => {
    expect(run(["cd ~.\r"])).toEqual(["cd ~.\r"]);
  });
  it("~? lists the escapes and sends nothing", () => {
    expect(run(["~?"])).toEqual(["<help>"]);
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
