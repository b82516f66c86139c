import { readFileSync } from "node:fs";
import type { Redis } from "ioredis";
import type { RedisWriter } from "./redis-writer.ts";
import { z } from "zod";

/**
 * Messages between the terminal-worker and API nodes over Redis. Output chunks
 * and input bytes are raw binary with a one-byte tag (the hot path); events and
 * control messages are small JSON documents.
 */

const TAG_DATA = 0x64; // 'd': output chunk, uint64 BE start offset, bytes
const TAG_EVENT = 0x65; // 'e': worker event (JSON)
const TAG_INPUT = 0x69; // 'i': input bytes
const TAG_CONTROL = 0x63; // 'c': control (JSON)
export const DATA_HEADER = 9;

/** `chunk` may be the PTY reads of one batch: they are copied once, straight behind the header. */
export function encodeData(offset: number, chunk: Buffer | readonly Buffer[]): Buffer {
  const parts = Buffer.isBuffer(chunk) ? [chunk] : chunk;
  let length = 0;
  for (const p of parts) length += p.length;
  const buf = Buffer.allocUnsafe(DATA_HEADER + length);
  buf[0] = TAG_DATA;
  buf.writeBigUInt64BE(BigInt(offset), 1);
  let at = DATA_HEADER;
  for (const p of parts) at += p.copy(buf, at);
  return buf;
}

/** Why a session ended, as the worker (or the API, for claim timeouts) reports it. */
export const endReason = z.enum([
  "exit",
  "client_closed",
  "orphaned",
  "idle_timeout",
  "session_expired",
  "worker_shutdown",
  "worker_lost",
  "workspace_deleted",
  "not_ready",
  "no_capacity",
  "eic_wiring_incomplete",
  "spawn_failed",
]);
export type EndReason = z.infer<typeof endReason>;

export const sessionEnd = z.object({
  reason: endReason,
  /** Total output bytes: a viewer closes only after forwarding everything before it. */
  offset: z.number().int().min(0),
  code: z.number().int().nullable().optional(),
  signal: z.union([z.string(), z.number()]).nullable().optional(),
  message: z.string().optional(),
});
export type SessionEnd = z.infer<typeof sessionEnd>;

export const workerEvent = z.discriminatedUnion("kind", [
  // A worker took the session's job: the claim deadline no longer applies (the shell may take a while to start).
  z.object({ kind: z.literal("claimed"), workerId: z.string() }),
  z.object({ kind: z.literal("ready"), workerId: z.string(), cols: z.number(), rows: z.number(), pid: z.number().optional() }),
  z.object({ kind: z.literal("end"), end: sessionEnd }),
]);
export type WorkerEvent = z.infer<typeof workerEvent>;

export const controlMessage = z.discriminatedUnion("t", [
  z.object({ t: z.literal("resize"), cols: z.number().int().min(1).max(1000), rows: z.number().int().min(1).max(1000) }),
  // window: the client's current window (smaller than the job's for a slow reader); the worker pauses at it.
  z.object({ t: z.literal("ack"), offset: z.number().int().min(0), window: z.number().int().min(1).optional() }),
  z.object({ t: z.literal("cancel"), reason: endReason }),
]);
export type ControlMessage = z.infer<typeof controlMessage>;

export type OutMessage = { kind: "data"; offset: number; chunk: Buffer } | { kind: "event"; event: WorkerEvent };
export type InMessage = { kind: "input"; data: Buffer } | { kind: "control"; control: ControlMessage };

export function encodeEvent(e: WorkerEvent): Buffer {
  return Buffer.concat([Buffer.of(TAG_EVENT), Buffer.from(JSON.stringify(e))]);
}
export function encodeInput(data: Buffer): Buffer {
  const buf = Buffer.allocUnsafe(1 + data.length);
  buf[0] = TAG_INPUT;
  data.copy(buf, 1);
  return buf;
}
export function encodeControl(c: ControlMessage): Buffer {
  return Buffer.concat([Buffer.of(TAG_CONTROL), Buffer.from(JSON.stringify(c))]);
}

/** Returns null for anything malformed: a bad message is dropped, never thrown into a session. */
export function decodeOut(buf: Buffer): OutMessage | null {
  if (buf.length >= DATA_HEADER && buf[0] === TAG_DATA) {
    return { kind: "data", offset: Number(buf.readBigUInt64BE(1)), chunk: buf.subarray(DATA_HEADER) };
  }
  if (buf.length > 1 && buf[0] === TAG_EVENT) {
    const r = workerEvent.safeParse(safeJson(buf.subarray(1)));
    return r.success ? { kind: "event", event: r.data } : null;
  }
  return null;
}

export function decodeIn(buf: Buffer): InMessage | null {
  if (buf.length >= 1 && buf[0] === TAG_INPUT) return { kind: "input", data: buf.subarray(1) };
  if (buf.length > 1 && buf[0] === TAG_CONTROL) {
    const r = controlMessage.safeParse(safeJson(buf.subarray(1)));
    return r.success ? { kind: "control", control: r.data } : null;
  }
  return null;
}

function safeJson(b: Buffer): unknown {
  try {
    return JSON.parse(b.toString("utf8"));
  } catch {
    return undefined;
  }
}

const lua = (name: string) => readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), "utf8");

/**
 * One output chunk into the session's replay log and onto its live channel, in
 * one transaction on a worker's RedisWriter, so a chunk is either in the log
 * before any reader looks or reaches subscribers after it: readers never miss a
 * byte between the two.
 *
 * - log: a stream, entry id "<offset>-1", field "p" = `payload` (the 9-byte
 *   header, "d" + uint64 BE offset, then the bytes), trimmed by the same XADD to
 *   entries from `keepFrom` on (exact MINID: the replay window), expiring
 *   `ttlMs` after the last append (an abandoned session's log goes by itself);
 * - live channel: `payload` as it is.
 *
 * An entry at or below the newest id is already in the log (resent after a
 * reconnect, or re-seeded after a Redis restart): that XADD fails, the rest of
 * the transaction still runs, and readers drop the second publish by offset.
 * A transaction rather than a Lua script: a script copies the payload into Lua
 * and out again, which cost Redis 4x the CPU for a 64 KiB chunk (docs/benchmark.md).
 */
export function appendChunk(w: RedisWriter, k: { log: string; out: string }, payload: Buffer, offset: number, keepFrom: number, ttlMs: number): boolean {
  return w.transaction([
    ["XADD", k.log, "MINID", `${keepFrom}-0`, `${offset}-1`, "p", payload],
    ["PEXPIRE", k.log, String(ttlMs)],
    ["PUBLISH", k.out, payload],
  ]);
}

export interface ByteRedis extends Redis {
  readOutputBuffer(log: string, from: string, maxBytes: number, maxEntries: number): Promise<[number, number, ...Buffer[]]>;
}

/** Registers the byte-path Lua scripts on a connection (EVALSHA, loaded on first use). */
export function withByteScripts(redis: Redis): ByteRedis {
  const r = redis as ByteRedis;
  if (!(r as unknown as Record<string, unknown>).readOutput) {
    r.defineCommand("readOutput", { numberOfKeys: 1, lua: lua("read-output") });
  }
  return r;
}

export interface LogRead {
  /** Start offset of the oldest byte still in the log, or null when the log is empty. */
  firstStart: number | null;
  /** Offset just past the newest byte in the log, or null when the log is empty. */
  lastEnd: number | null;
  chunks: { offset: number; chunk: Buffer }[];
}

export async function readOutput(r: ByteRedis, log: string, from: number, maxBytes: number, maxEntries = 512): Promise<LogRead> {
  const res = await r.readOutputBuffer(log, String(from), maxBytes, maxEntries);
  const first = Number(res[0]);
  const last = Number(res[1]);
  const chunks: LogRead["chunks"] = [];
  for (let i = 2; i < res.length; i++) {
    const m = decodeOut(res[i] as Buffer);
    if (m?.kind === "data") chunks.push({ offset: m.offset, chunk: m.chunk });
  }
  return { firstStart: first < 0 ? null : first, lastEnd: last < 0 ? null : last, chunks };
}
