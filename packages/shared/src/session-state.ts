import type { ChainableCommander, Redis } from "ioredis";
import { z } from "zod";
import { encodeEvent } from "./bus-codec.ts";
import { endReason, sessionEnd, type EndReason, type SessionEnd } from "./bus-messages.ts";
import { isCluster } from "./config.ts";
import type { SessionKeys } from "./redis-keys.ts";

/**
 * Publishes on a per-session channel: PUBLISH on one Redis; on a cluster SPUBLISH,
 * so the message stays on the session's shard instead of crossing every node.
 */
export function publishSession(r: Pick<Redis, "publish" | "spublish">, channel: string, msg: Buffer | string): Promise<number> {
  return isCluster(r) ? (r.spublish(channel, msg) as Promise<number>) : r.publish(channel, msg);
}

/** `publishSession` as part of the caller's MULTI or pipeline. */
export function publishSessionIn(tx: ChainableCommander, channel: string, msg: Buffer | string): ChainableCommander {
  return isCluster(tx) ? tx.spublish(channel, msg) : tx.publish(channel, msg);
}

/**
 * The one owner of a terminal session's state in Redis: the meta hash
 * (`sessionKeys(ns, id).meta`), the cancel key, and how long they and the
 * output log live. Every write of them goes through a function here; every
 * read is validated here.
 *
 * States and who moves a session between them:
 *
 *   pending ──(worker: shell started)──▶ running ──(worker: end)──▶ ended
 *      └──────────(worker: no shell: cancelled, claim failed, provider refused)──────▶ ended
 *
 * - pending: written by the API node that opened the session, before the job exists.
 * - running: written by the worker once the PTY exists (and again, with the whole
 *   identity, when it re-seeds a Redis that restarted empty).
 * - ended: written by the worker, with the end (zod `sessionEnd`) as JSON; final.
 *
 * A worker taking the job ("claimed") is announced on the output channel, not
 * stored: the hash stays pending until the shell runs. The writes are plain
 * HSETs, not checked transitions: only the session's worker writes after pending,
 * and it writes running before ended, so the order above holds without a script.
 */
export const sessionState = z.enum(["pending", "running", "ended"]);
export type SessionState = z.infer<typeof sessionState>;

/** The transitions the writers below make (documentation and tests; Redis does not enforce them). */
export const SESSION_TRANSITIONS: Readonly<Record<SessionState, readonly SessionState[]>> = {
  pending: ["running", "ended"],
  // running → running: the re-seed after a Redis restart writes the same state again.
  running: ["running", "ended"],
  ended: [],
};

export function canTransition(from: SessionState, to: SessionState): boolean {
  return SESSION_TRANSITIONS[from].includes(to);
}

/** A pending session's hash: long past any claim deadline, so a late re-attach still learns what happened. */
export const PENDING_META_TTL_MS = 24 * 3600_000;
/** How long an ended session's hash, log and cancel key stay: a late re-attach still gets the tail and the exit. */
export const ENDED_TTL_MS = 3600_000;
/** A live session's output log expires this long after its last append (an abandoned session's log goes by itself). */
export const LIVE_LOG_TTL_MS = 6 * 3600_000;

/** What the meta hash says, validated field by field: a corrupt field reads as absent and is named in `corrupt`. */
export interface SessionMeta {
  workspaceId: string | null;
  orgId: string | null;
  state: SessionState | null;
  workerId: string | null;
  pid: number | null;
  cols: number | null;
  rows: number | null;
  /** When the session was opened (ms since the epoch, the API node's clock). */
  createdAt: number | null;
  /** A command run with pipes (exec without a PTY): its re-attach gets a pipe's input budget. */
  piped: boolean;
  end: SessionEnd | null;
  /** Fields present but not valid (the caller decides whether to log). */
  corrupt: string[];
}

const dimension = z.coerce.number().int().min(1).max(1000);
const nonNegativeInt = z.coerce.number().int().min(0);
const text = z.string().min(1);

/** The stored end (JSON of a zod `sessionEnd`), or null when absent or not a valid end. */
export function parseSessionEnd(raw: string | null | undefined): SessionEnd | null {
  if (raw == null) return null;
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    // Not JSON: not a valid end either.
    return null;
  }
  const parsed = sessionEnd.safeParse(json);
  return parsed.success ? parsed.data : null;
}

/** The stored state, or null when absent or not one of the states above. */
export function parseSessionState(raw: string | null | undefined): SessionState | null {
  const parsed = sessionState.safeParse(raw);
  return parsed.success ? parsed.data : null;
}

/** Validates an HGETALL of the meta hash ({} when the key does not exist). */
export function parseSessionMeta(raw: Record<string, string>): SessionMeta {
  const corrupt: string[] = [];
  function field<T>(name: string, schema: z.ZodType<T>): T | null {
    const v = raw[name];
    if (v === undefined) return null;
    const parsed = schema.safeParse(v);
    if (parsed.success) return parsed.data;
    corrupt.push(name);
    return null;
  }
  const end = raw.end === undefined ? null : parseSessionEnd(raw.end);
  if (raw.end !== undefined && end === null) corrupt.push("end");
  return {
    workspaceId: field("ws", text),
    orgId: field("org", text),
    state: field("state", sessionState),
    workerId: field("worker", text),
    pid: field("pid", nonNegativeInt),
    cols: field("cols", dimension),
    rows: field("rows", dimension),
    createdAt: field("created", nonNegativeInt),
    piped: raw.piped === "1",
    end,
    corrupt,
  };
}

export async function readSessionMeta(redis: Pick<Redis, "hgetall">, keys: Pick<SessionKeys, "meta">): Promise<SessionMeta> {
  return parseSessionMeta(await redis.hgetall(keys.meta));
}

// ---- writes: each adds its commands to the caller's MULTI or pipeline (no round trip of its own) ----

/** API, at open, before the job exists: the session's identity and size, pending. */
export function recordPending(
  tx: ChainableCommander,
  keys: Pick<SessionKeys, "meta">,
  s: { workspaceId: string; orgId: string; cols: number; rows: number; createdAt: number; piped?: boolean },
): ChainableCommander {
  return tx
    .hset(keys.meta, { ws: s.workspaceId, org: s.orgId, cols: s.cols, rows: s.rows, state: "pending" satisfies SessionState, created: s.createdAt, ...(s.piped ? { piped: 1 } : {}) })
    .pexpire(keys.meta, PENDING_META_TTL_MS);
}

/** Worker, once the PTY exists: running, on this worker, with this pid. */
export function recordRunning(tx: ChainableCommander, keys: Pick<SessionKeys, "meta">, s: { workerId: string; pid: number }): ChainableCommander {
  return tx.hset(keys.meta, { state: "running" satisfies SessionState, worker: s.workerId, pid: s.pid });
}

/** Worker, after a Redis reconnect (the server may have restarted empty): the whole running identity again. */
export function recordReseeded(
  tx: ChainableCommander,
  keys: Pick<SessionKeys, "meta">,
  s: { workspaceId: string; orgId: string; workerId: string; pid: number; piped?: boolean },
): ChainableCommander {
  return tx.hset(keys.meta, { ws: s.workspaceId, org: s.orgId, worker: s.workerId, state: "running" satisfies SessionState, pid: s.pid, ...(s.piped ? { piped: 1 } : {}) });
}

/** Worker, on a resize: the size a re-attaching client starts with. */
export function recordSize(tx: ChainableCommander, keys: Pick<SessionKeys, "meta">, size: { cols: number; rows: number }): ChainableCommander {
  return tx.hset(keys.meta, { cols: size.cols, rows: size.rows });
}

/**
 * Worker, at the end (final): the end stored, the hash (and with `log`, the output
 * log) kept ENDED_TTL_MS more, the cancel key set (a late job or re-subscribe sees
 * it), then the end announced on the output channel. Same order as one MULTI.
 */
export function recordEnded(tx: ChainableCommander, keys: Pick<SessionKeys, "meta" | "log" | "cancel" | "out">, end: SessionEnd, o: { expireLog: boolean }): ChainableCommander {
  tx.hset(keys.meta, { state: "ended" satisfies SessionState, end: JSON.stringify(end) }).pexpire(keys.meta, ENDED_TTL_MS);
  if (o.expireLog) tx.pexpire(keys.log, ENDED_TTL_MS);
  return publishSessionIn(tx.set(keys.cancel, end.reason, "PX", ENDED_TTL_MS), keys.out, encodeEvent({ kind: "end", end }));
}

/** API, ending a session: the cancel key (a worker that claims or re-subscribes later still sees it). */
export function recordCancel(tx: ChainableCommander, keys: Pick<SessionKeys, "cancel">, reason: EndReason): ChainableCommander {
  return tx.set(keys.cancel, reason, "PX", ENDED_TTL_MS);
}

/** The cancel key's reason, or null when absent; a value that is no end reason reads as client_closed. */
export function parseCancel(raw: string | null): EndReason | null {
  if (raw === null || raw === "") return null;
  const parsed = endReason.safeParse(raw);
  return parsed.success ? parsed.data : "client_closed";
}

/**
 * Runs a pipeline or MULTI of the writes above and rejects with the first command's
 * error, as a single awaited command would (ioredis resolves per-command errors).
 */
export async function execWrites(tx: ChainableCommander): Promise<void> {
  const results = await tx.exec();
  for (const [err] of results ?? []) if (err) throw err;
}
