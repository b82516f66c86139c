import type { Redis } from "ioredis";
import { decodeOut } from "./bus-codec.ts";
import { luaScript } from "./lua-script.ts";
import type { RedisWriter } from "./redis-writer.ts";

/**
 * One output chunk into the session's replay log and onto its live channel, in
 * one transaction on a worker's RedisWriter, so a chunk is either in the log
 * before any reader looks or reaches subscribers after it: readers never miss a
 * byte between the two.
 *
 * - log: a stream, entry id "<offset>-1", field "p" = `payload` (the 9-byte
 *   header, "d" + uint64 BE offset, then the bytes), trimmed by the same XADD to
 *   entries from `keepFrom` on (exact MINID: the replay window), expiring
 *   `ttlMs` after the last append that carried one (an abandoned session's log
 *   goes by itself); `ttlMs` null leaves the expiry as it is, so a writer sets it
 *   only now and then (one Redis command less per keystroke);
 * - live channel: `payload` as it is.
 *
 * An entry at or below the newest id is already in the log (resent after a
 * reconnect, or re-seeded after a Redis restart): that XADD fails, the rest of
 * the transaction still runs, and readers drop the second publish by offset.
 * A transaction rather than a Lua script: a script copies the payload into Lua
 * and out again, which cost Redis 4x the CPU for a 64 KiB chunk (docs/benchmark.md).
 */
export function appendChunk(w: RedisWriter, k: { log: string; out: string }, payload: Buffer, offset: number, keepFrom: number, ttlMs: number | null): boolean {
  return w.transaction([
    ["XADD", k.log, "MINID", `${keepFrom}-0`, `${offset}-1`, "p", payload],
    ...(ttlMs === null ? [] : [["PEXPIRE", k.log, String(ttlMs)] as (string | Buffer)[]]),
    // Sharded on a cluster: the publish runs on the session's shard, inside the same transaction.
    [w.sharded ? "SPUBLISH" : "PUBLISH", k.out, payload],
  ]);
}

/**
 * A connection the output log is read through. Any ioredis connection will do:
 * readOutput loads its script itself, so nothing is added to the caller's object.
 */
export type ByteRedis = Redis;

/** The read-output script (lua/read-output.lua). */
const evalReadOutput = luaScript("read-output", 1);

export interface LogRead {
  /** Start offset of the oldest byte still in the log, or null when the log is empty. */
  firstStart: number | null;
  /** Offset just past the newest byte in the log, or null when the log is empty. */
  lastEnd: number | null;
  chunks: { offset: number; chunk: Buffer }[];
}

export async function readOutput(r: ByteRedis, log: string, from: number, maxBytes: number, maxEntries = 512): Promise<LogRead> {
  const res = (await evalReadOutput(r, [log, String(from), maxBytes, maxEntries])) as unknown[];
  const first = Number(res[0]);
  const last = Number(res[1]);
  const chunks: LogRead["chunks"] = [];
  for (let i = 2; i < res.length; i++) {
    const m = decodeOut(res[i] as Buffer);
    if (m?.kind === "data") chunks.push({ offset: m.offset, chunk: m.chunk });
  }
  return { firstStart: first < 0 ? null : first, lastEnd: last < 0 ? null : last, chunks };
}
