import { and, eq, isNull, or, sql } from "drizzle-orm";
import type { EndReason } from "../bus-messages.ts";
import type { Db } from "./client.ts";
import { terminalSessions } from "./schema.ts";

/**
 * The one owner of the terminal_sessions table (the audit trail). A row's life:
 * inserted by the API at open (worker_id null) → claimed by one worker → live
 * byte counts from that worker → closed once, by that worker (directly or from
 * its outbox), or by the API when no live worker holds it. Every write after
 * the claim is `WHERE worker_id = <holder> AND closed_at IS NULL`: nobody
 * rewrites another worker's row, and a second close is a no-op.
 */

export type NewTerminalSession = Pick<
  typeof terminalSessions.$inferInsert,
  "id" | "orgId" | "workspaceId" | "tokenId" | "tokenPrefix" | "clientAddr" | "userAgent" | "provider" | "instanceId" | "command" | "pty"
>;

/** API, at open (before the job exists): who is opening a shell into which workspace, from where. */
export async function insertTerminalSession(db: Db, row: NewTerminalSession): Promise<void> {
  await db.insert(terminalSessions).values(row);
}

/**
 * Worker, taking the job: only a row still open and not held by another worker
 * (a job crafted for someone else's session claims nothing). true: this worker holds it.
 */
export async function claimTerminalSession(db: Db, sessionId: string, workerId: string): Promise<boolean> {
  const t = terminalSessions;
  const rows = await db.update(t).set({ workerId }).where(claimable(sessionId, workerId)).returning({ id: t.id });
  return rows.length > 0;
}

/** The claim's condition, for both claims: the row is open and held by nobody, or by this worker already (a retry). */
function claimable(sessionId: string, workerId: string) {
  const t = terminalSessions;
  return and(eq(t.id, sessionId), isNull(t.closedAt), or(isNull(t.workerId), eq(t.workerId, workerId)));
}

/** What a claim that records learns of the org and the workspace (the recording's settings and title). */
export interface ClaimRecording {
  enabled: boolean;
  retentionDays: number;
  input: boolean;
  title: string;
}

/**
 * The claim, for a worker that records sessions: the same condition, and in the same statement
 * (one commit, no other round trip before the shell) the row names `recordingKey` when the org
 * records, and the org's recording settings come back. null: not claimed.
 */
export async function claimTerminalSessionRecording(db: Db, sessionId: string, workerId: string, recordingKey: string): Promise<ClaimRecording | null> {
  const t = terminalSessions;
  // Not aliased: the condition names the table's columns as drizzle renders them.
  const rows = await db.execute<{ enabled: boolean; retention_days: number; input: boolean; title: string }>(sql`
    update ${t}
       set worker_id = ${workerId},
           recording_key = case when o.recording_enabled then ${recordingKey} else ${t.recordingKey} end,
           recording_bytes = case when o.recording_enabled then 0 else ${t.recordingBytes} end
      from orgs o, workspaces w
     where ${claimable(sessionId, workerId)}
       and o.id = ${t.orgId} and w.id = ${t.workspaceId}
    returning o.recording_enabled as enabled, o.recording_retention_days as retention_days, o.recording_input as input, w.name as title`);
  const r = [...rows][0];
  return r ? { enabled: r.enabled, retentionDays: r.retention_days, input: r.input, title: r.title } : null;
}

/** Worker, once the shell runs: what the provider knows (the instance, the OS user), on the row it holds. */
export async function recordSessionTarget(db: Db, sessionId: string, workerId: string, target: { instanceId?: string | null; osUser?: string | null }): Promise<void> {
  const t = terminalSessions;
  await db
    .update(t)
    .set({ instanceId: target.instanceId ?? undefined, osUser: target.osUser ?? undefined })
    .where(and(eq(t.id, sessionId), eq(t.workerId, workerId)));
}

export interface SessionByteCounts {
  sessionId: string;
  bytesIn: number;
  bytesOut: number;
}

/**
 * Worker: the byte counts of its live sessions, so the row tells the truth while
 * the session runs and after a crash that leaves no close behind (worker_lost
 * keeps the last counts). One statement for every session.
 */
export async function reportSessionBytes(db: Db, workerId: string, counts: SessionByteCounts[]): Promise<void> {
  if (counts.length === 0) return;
  // Three array parameters, not a VALUES row each: one statement text whatever the count, so it
  // is prepared once per connection (client.ts). The elements are uuids and integers of our own.
  const array = (xs: readonly (string | number)[]) => `{${xs.join(",")}}`;
  await db.execute(sql`
    UPDATE terminal_sessions AS t SET bytes_in = v.bytes_in, bytes_out = v.bytes_out
    FROM unnest(${array(counts.map((c) => c.sessionId))}::uuid[], ${array(counts.map((c) => c.bytesIn))}::bigint[], ${array(counts.map((c) => c.bytesOut))}::bigint[]) AS v(id, bytes_in, bytes_out)
    WHERE t.id = v.id AND t.worker_id = ${workerId} AND t.closed_at IS NULL`);
}

/** How a session ended, as its worker saw it (the audit outbox's entry: `auditClose`). */
export interface WorkerSessionClose {
  sessionId: string;
  workerId: string;
  reason: EndReason;
  code: number | null;
  signal: string | null;
  bytesIn: number;
  bytesOut: number;
  /** The end time (ms since the epoch, the worker's clock), not when the row is written. */
  closedAt: number;
  /** The recording, complete in the store (recording_bytes, _truncated, _ended_at in the same UPDATE). */
  recording?: { bytes: number; truncated: boolean };
}

/**
 * Closes the row if it is still open and held by `close.workerId`.
 * true: closed now; false: nothing to close (closed already, or not that worker's).
 */
export async function closeHeldSession(db: Db, close: WorkerSessionClose): Promise<boolean> {
  const t = terminalSessions;
  const rows = await db
    .update(t)
    .set({
      // The worker's clock, never before the row opened (a clock a little behind the database's).
      closedAt: sql`greatest(${t.openedAt}, ${new Date(close.closedAt).toISOString()}::timestamptz)` as unknown as Date,
      closeReason: close.reason,
      exitCode: close.code,
      exitSignal: close.signal,
      bytesIn: close.bytesIn,
      bytesOut: close.bytesOut,
      ...(close.recording ? { recordingBytes: close.recording.bytes, recordingTruncated: close.recording.truncated, recordingEndedAt: sql`now()` as unknown as Date } : {}),
    })
    .where(and(eq(t.id, close.sessionId), eq(t.workerId, close.workerId), isNull(t.closedAt)))
    .returning({ id: t.id });
  return rows.length > 0;
}

/**
 * API: closes a row the API is the last word on, at the database's time: never
 * claimed (`heldBy` null), or held by a worker that is gone. A row another worker
 * holds is never touched.
 */
export async function closeUnheldSession(db: Db, sessionId: string, reason: EndReason, heldBy: string | null = null): Promise<void> {
  const t = terminalSessions;
  await db
    .update(t)
    .set({ closedAt: sql`now()` as unknown as Date, closeReason: reason })
    .where(and(eq(t.id, sessionId), isNull(t.closedAt), heldBy === null ? isNull(t.workerId) : eq(t.workerId, heldBy)));
}

/** API: the ids of a workspace's sessions still open (to end them when it is deleted or restarted). */
/** Worker, hanging up a lost session: where it ran (null: no such row). */
export async function sessionPlace(db: Db, sessionId: string): Promise<{ workspaceId: string; provider: string; closed: boolean } | null> {
  const t = terminalSessions;
  const [r] = await db.select({ workspaceId: t.workspaceId, provider: t.provider, closedAt: t.closedAt }).from(t).where(eq(t.id, sessionId));
  return r ? { workspaceId: r.workspaceId, provider: r.provider, closed: r.closedAt !== null } : null;
}

export async function openSessionIds(db: Db, workspaceId: string): Promise<string[]> {
  const t = terminalSessions;
  const rows = await db
    .select({ id: t.id })
    .from(t)
    .where(and(eq(t.workspaceId, workspaceId), isNull(t.closedAt)));
  return rows.map((r) => r.id);
}
