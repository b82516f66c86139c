import { describe, expect, it } from "vitest";
import { FrameSplitter, MAX_INPUT_FRAME, STDIN_EOF, frame, stdinFrames } from "./pipe-frames.ts";

describe("exec framing (client side)", () => {
  it("splits output arriving in arbitrary pieces, across what would be re-attaches", () => {
    const all = Buffer.concat([frame(1, Buffer.from("out")), frame(2, Buffer.from("err")), frame(1, Buffer.alloc(70_000, 7))]);
    const s = new FrameSplitter();
    const got: [number, number][] = [];
    for (let i = 0; i < all.length; i += 4093) s.push(all.subarray(i, i + 4093), (st, p) => got.push([st, p.length]));
    expect(got).toEqual([
      [1, 3],
      [2, 3],
      [1, 70_000],
    ]);
  });
  it("cuts stdin into frames of at most 64 KiB; EOF is an empty stdin frame", () => {
    const f = stdinFrames(Buffer.alloc(MAX_INPUT_FRAME * 2 + 1));
    expect(f.map((b) => b.readUInt32BE(1))).toEqual([MAX_INPUT_FRAME, MAX_INPUT_FRAME, 1]);
    expect(f.every((b) => b[0] === 0)).toBe(true);
    expect([...STDIN_EOF]).toEqual([0, 0, 0, 0, 0]);
  });
});
