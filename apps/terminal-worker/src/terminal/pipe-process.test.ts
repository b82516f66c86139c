import { describe, expect, it } from "vitest";
import { FrameReader, frame, spawnPiped, STREAM } from "./pipe-process.ts";

function split(out: Buffer): { stdout: string; stderr: string } {
  const r = new FrameReader();
  const got = { stdout: "", stderr: "" };
  r.push(out, (s, p) => {
    if (s === STREAM.stdout) got.stdout += p.toString();
    if (s === STREAM.stderr) got.stderr += p.toString();
  });
  return got;
}

describe("FrameReader", () => {
  it("reassembles frames split at every byte", () => {
    const all = Buffer.concat([frame(1, Buffer.from("hello")), frame(2, Buffer.from("")), frame(0, Buffer.from("x"))]);
    const got: [number, string][] = [];
    const r = new FrameReader();
    for (let i = 0; i < all.length; i++) r.push(all.subarray(i, i + 1), (s, p) => got.push([s, p.toString()]));
    expect(got).toEqual([
      [1, "hello"],
      [2, ""],
      [0, "x"],
    ]);
  });
  it("a frame longer than the limit closes the input instead of buffering it", () => {
    const got: [number, number][] = [];
    const r = new FrameReader();
    const h = Buffer.alloc(5);
    h.writeUInt32BE(64 * 1024 * 1024, 1);
    r.push(h, (s, p) => got.push([s, p.length]));
    r.push(frame(0, Buffer.from("late")), (s, p) => got.push([s, p.length]));
    expect(got).toEqual([[0, 0]]);
  });
});

describe("spawnPiped", () => {
  it("frames stdout and stderr apart, takes framed stdin with an EOF, and reports the exit", async () => {
    const p = spawnPiped("/bin/sh", ["-c", "cat; echo err >&2; exit 3"], { env: { PATH: "/usr/bin:/bin" } });
    const chunks: Buffer[] = [];
    p.onData((d) => chunks.push(d as unknown as Buffer));
    const exit = new Promise<{ exitCode: number }>((r) => p.onExit(r));
    p.write(Buffer.concat([frame(0, Buffer.from("in-")), frame(0, Buffer.from("put"))]));
    p.write(frame(0, Buffer.alloc(0)));
    expect((await exit).exitCode).toBe(3);
    expect(split(Buffer.concat(chunks))).toEqual({ stdout: "in-put", stderr: "err\n" });
  });
  it("a command killed by a signal reports it", async () => {
    const p = spawnPiped("/bin/sh", ["-c", "kill -TERM $$"], { env: { PATH: "/usr/bin:/bin" } });
    const e = await new Promise<{ exitCode: number; signal?: number }>((r) => p.onExit(r));
    expect(e.signal).toBe(15);
  });
  it("an executable that does not exist fails at once", () => {
    expect(() => spawnPiped("/nonexistent/prog", [], { env: {} })).toThrow(/could not start/);
  });
});
