import { describe, expect, it } from "vitest";
import { decodeIn, encodeControl, encodeInput, encodeSequenced } from "./bus-codec.ts";

describe("sequenced input and control (a client connection's numbered stream)", () => {
  it("input and control keep their content, stream and number", () => {
    const data = Buffer.from([0, 0x73, 0xff, 0x0a]);
    expect(decodeIn(encodeSequenced(0xffff_fffe, 7, { data }))).toEqual({ kind: "input", data, stream: 0xffff_fffe, seq: 7 });
    expect(decodeIn(encodeSequenced(3, 1, { control: encodeControl({ t: "resize", cols: 90, rows: 20 }) }))).toEqual({
      kind: "control",
      control: { t: "resize", cols: 90, rows: 20 },
      stream: 3,
      seq: 1,
    });
    // Unnumbered messages (an API node's cancel, an older node) are as before.
    expect(decodeIn(encodeInput(data))).toEqual({ kind: "input", data });
  });

  it("a malformed one is dropped: number 0, a bad inner message, one inside another, too short", () => {
    const inner = encodeSequenced(1, 2, { data: Buffer.from("x") });
    expect(decodeIn(encodeSequenced(1, 0, { data: Buffer.from("x") }))).toBeNull();
    expect(decodeIn(encodeSequenced(1, 2, { control: Buffer.from("c{not json") }))).toBeNull();
    expect(decodeIn(encodeSequenced(1, 3, { control: inner }))).toBeNull();
    expect(decodeIn(inner.subarray(0, 9))).toBeNull();
  });
});
