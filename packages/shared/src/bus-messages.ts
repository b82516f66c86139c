import { z } from "zod";

/** What travels between the terminal-worker and API nodes over Redis, as schemas: the codec (bus-codec.ts) validates every JSON message with them. */

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
  // Redis Cluster: the session's shard (primary and replicas) stayed unreachable (REDIS_SHARD_LOST_MS).
  "store_unavailable",
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

/** An API node's sequence of input and control messages for one client connection (bus-codec.ts, encodeSequenced). */
const inputStream = z.number().int().min(0).max(0xffff_ffff);
/** Input streams a worker session remembers (its controllers, most recent first). */
export const MAX_INPUT_STREAMS = 16;

export const workerEvent = z.discriminatedUnion("kind", [
  // A worker took the session's job: the claim deadline no longer applies (the shell may take a while to start).
  z.object({ kind: z.literal("claimed"), workerId: z.string() }),
  z.object({ kind: z.literal("ready"), workerId: z.string(), cols: z.number(), rows: z.number(), pid: z.number().optional() }),
  z.object({ kind: z.literal("end"), end: sessionEnd }),
  // The worker's subscriber was away (or input arrived out of sequence): each input stream it knows,
  // with the last message it applied; the controller's API node sends again what came after (resent).
  z.object({ kind: z.literal("resync"), streams: z.array(z.tuple([inputStream, z.number().int().min(0)])).max(MAX_INPUT_STREAMS) }),
  // Input bytes the shell has received, for a client that asked (input_from): what it may forget.
  z.object({ kind: z.literal("input"), offset: z.number().int().min(0) }),
]);
export type WorkerEvent = z.infer<typeof workerEvent>;

export const controlMessage = z.discriminatedUnion("t", [
  z.object({ t: z.literal("resize"), cols: z.number().int().min(1).max(1000), rows: z.number().int().min(1).max(1000) }),
  // window: the client's current window (smaller than the job's for a slow reader); the worker pauses at it.
  z.object({ t: z.literal("ack"), offset: z.number().int().min(0), window: z.number().int().min(1).optional() }),
  z.object({ t: z.literal("cancel"), reason: endReason }),
  // Answer to a resync, ahead of the messages sent again: `stream`'s messages before `from` will not come.
  z.object({ t: z.literal("resent"), stream: inputStream, from: z.number().int().min(1) }),
  // First of a stream whose client counts its input: the stream's input starts at byte `offset` of
  // the session's; what the shell already has is dropped, and the worker acks what it received.
  z.object({ t: z.literal("input_from"), offset: z.number().int().min(0) }),
]);
export type ControlMessage = z.infer<typeof controlMessage>;
