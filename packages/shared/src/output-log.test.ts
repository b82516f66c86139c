import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uniqueNs, testUrls } from "../../../test/helpers/env.ts";
import { waitFor } from "../../../test/helpers/http.ts";
import { createRedis } from "./config.ts";
import { createLogger } from "./logger.ts";
import { createRedisWriter, type RedisWriter } from "./redis-writer.ts";
import { decodeIn, decodeOut, encodeControl, encodeData, encodeEvent, encodeInput } from "./bus-codec.ts";
import { appendChunk, readOutput, type ByteRedis } from "./output-log.ts";
import { sessionKeys } from "./redis-keys.ts";

let r: ByteRedis;
let sub: ReturnType<typeof createRedis>;
let w: RedisWriter;
beforeAll(() => {
  r = createRedis(testUrls().redisUrl);
  sub = createRedis(testUrls().redisUrl);
  w = createRedisWriter({ url: testUrls().redisUrl, name: "byte-path-test", log: createLogger("test", "silent") });
});
afterAll(async () => {
  r.disconnect();
  sub.disconnect();
  await w.close();
});

/** Appends `chunks` as a worker would, keeping `window` bytes. */
async function write(k: ReturnType<typeof sessionKeys>, chunks: string[], window = 1 << 20, start = 0) {
  let off = start;
  for (const c of chunks) {
    const b = Buffer.from(c);
    appendChunk(w, k, encodeData(off, b), off, Math.max(0, off + b.length - window), 60_000);
    off += b.length;
  }
  await w.barrier();
  return off;
}
const text = (x: Awaited<ReturnType<typeof readOutput>>) => x.chunks.map((c) => c.chunk.toString()).join("");

describe("the replay log", () => {
  it("expires ttlMs after the last append that carried one; an append without one leaves it as it is", async () => {
    const k = sessionKeys(uniqueNs(), "00000000-0000-4000-8000-00000000000a");
    await waitFor(async () => w.ready, 5000, 10);
    appendChunk(w, k, encodeData(0, Buffer.from("a")), 0, 0, 60_000);
    await w.barrier();
    const first = await r.pttl(k.log);
    expect(first).toBeGreaterThan(50_000);
    appendChunk(w, k, encodeData(1, Buffer.from("b")), 1, 0, null);
    await w.barrier();
    const after = await r.pttl(k.log);
    expect(after).toBeGreaterThan(0); // still expiring…
    expect(after).toBeLessThanOrEqual(first); // …from the first append, not renewed
    expect(text(await readOutput(r, k.log, 0, 1 << 20))).toBe("ab");
    appendChunk(w, k, encodeData(2, Buffer.from("c")), 2, 0, 600_000);
    await w.barrier();
    expect(await r.pttl(k.log)).toBeGreaterThan(500_000);
    await r.del(k.log);
  });

  it("reads through any connection without adding anything to it, and again after the server lost its scripts", async () => {
    const k = sessionKeys(uniqueNs(), "00000000-0000-4000-8000-000000000009");
    await waitFor(async () => w.ready, 5000, 10);
    await write(k, ["before ", "flush"]);
    const plain = createRedis(testUrls().redisUrl);
    try {
      expect(text(await readOutput(plain, k.log, 0, 1 << 20))).toBe("before flush");
      expect(text(await readOutput(plain, k.log, 7, 1 << 20))).toBe("flush");
      // The caller's connection is as it was: no command defined on it.
      expect("readOutput" in plain || "readOutputBuffer" in plain).toBe(false);
      // A restarted server has no scripts (NOSCRIPT): the next read loads it again.
      await plain.script("FLUSH");
      expect(text(await readOutput(plain, k.log, 0, 1 << 20))).toBe("before flush");
    } finally {
      plain.disconnect();
    }
  });

  it("appends atomically with the publish, and reads from any offset, even inside a chunk", async () => {
    const k = sessionKeys(uniqueNs(), "00000000-0000-4000-8000-000000000001");
    const got: Buffer[] = [];
    sub.on("messageBuffer", (ch: Buffer, m: Buffer) => ch.toString() === k.out && got.push(m));
    await sub.subscribe(k.out);
    const end = await write(k, ["hello ", "wide ", "world"]);
    expect(end).toBe(16);
    const all = await readOutput(r, k.log, 0, 1 << 20);
    expect(all).toMatchObject({ firstStart: 0, lastEnd: 16 });
    expect(text(all)).toBe("hello wide world");
    const mid = await readOutput(r, k.log, 8, 1 << 20);
    // The chunk containing offset 8 comes first, whole, with its own offset.
    expect(mid.chunks.map((c) => c.offset)).toEqual([6, 11]);
    expect(await readOutput(r, k.log, 16, 1 << 20)).toMatchObject({ chunks: [], lastEnd: 16 });
    await waitFor(async () => got.length >= 3, 5000, 10);
    expect(got.map((m) => decodeOut(m))).toEqual([
      { kind: "data", offset: 0, chunk: Buffer.from("hello ") },
      { kind: "data", offset: 6, chunk: Buffer.from("wide ") },
      { kind: "data", offset: 11, chunk: Buffer.from("world") },
    ]);
  });

  it("trims to the replay window and reports where the log now starts", async () => {
    const k = sessionKeys(uniqueNs(), "00000000-0000-4000-8000-000000000002");
    await write(k, Array.from({ length: 10 }, (_, i) => `${i}`.repeat(10)), 35);
    const x = await readOutput(r, k.log, 0, 1 << 20);
    expect(x.firstStart).toBeGreaterThanOrEqual(60);
    expect(x.lastEnd).toBe(100);
    expect(text(x).endsWith("9".repeat(10))).toBe(true);
  });

  it("an entry sent again (a resend after a reconnect) is skipped in the log but still published", async () => {
    const k = sessionKeys(uniqueNs(), "00000000-0000-4000-8000-000000000003");
    await write(k, ["abc", "def"]);
    await expect(write(k, ["abc"], 1 << 20, 0)).resolves.toBe(3);
    expect(text(await readOutput(r, k.log, 0, 1 << 20))).toBe("abcdef");
  });

  it("stops reading at maxBytes", async () => {
    const k = sessionKeys(uniqueNs(), "00000000-0000-4000-8000-000000000004");
    await write(k, Array.from({ length: 20 }, () => "x".repeat(100)));
    const x = await readOutput(r, k.log, 0, 250);
    expect(x.chunks.length).toBe(3);
  });
});

describe("message codecs", () => {
  it("round-trip, and malformed messages decode to null instead of throwing", () => {
    expect(decodeIn(encodeInput(Buffer.from("ls\r")))).toEqual({ kind: "input", data: Buffer.from("ls\r") });
    expect(decodeIn(encodeControl({ t: "resize", cols: 80, rows: 24 }))).toEqual({ kind: "control", control: { t: "resize", cols: 80, rows: 24 } });
    expect(decodeOut(encodeEvent({ kind: "end", end: { reason: "exit", offset: 3, code: 0, signal: null } }))).toMatchObject({ kind: "event" });
    for (const bad of [Buffer.alloc(0), Buffer.from("zzz"), Buffer.from("c{not json"), Buffer.from('c{"t":"resize","cols":0,"rows":1}'), Buffer.from("e[]")]) {
      expect(decodeIn(bad)).toBeNull();
      if (bad[0] !== 0x64) expect(decodeOut(bad)).toBeNull();
    }
  });
});
