import { and, eq, isNotNull, isNull, lt, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { orgs, terminalSessions, terminalSessionViewers, workspaces } from "../db/schema.ts";

/** An organisation's recording settings (orgs columns; defaults: on, 30 days, no input). */
export interface RecordingSettings {
  enabled: boolean;
  retentionDays: number;
  input: boolean;
}

export async function readRecordingSettings(db: Db, orgId: string): Promise<RecordingSettings | null> {
  const [row] = await db
    .select({ enabled: orgs.recordingEnabled, retentionDays: orgs.recordingRetentionDays, input: orgs.recordingInput })
    .from(orgs)
    .where(eq(orgs.id, orgId));
  return row ?? null;
}

export async function updateRecordingSettings(db: Db, orgId: string, patch: Partial<RecordingSettings>): Promise<RecordingSettings | null> {
  const set = {
    ...(patch.enabled !== undefined ? { recordingEnabled: patch.enabled } : {}),
    ...(patch.retentionDays !== undefined ? { recordingRetentionDays: patch.retentionDays } : {}),
    ...(patch.input !== undefined ? { recordingInput: patch.input } : {}),
  };
  if (Object.keys(set).length > 0) await db.update(orgs).set(set).where(eq(orgs.id, orgId));
  return readRecordingSettings(db, orgId);
}

/** Worker, as the recording starts: the session row names its key (the list shows it as recorded). */
export async function recordingStarted(db: Db, sessionId: string, key: string): Promise<void> {
  await db.update(terminalSessions).set({ recordingKey: key, recordingBytes: 0 }).where(eq(terminalSessions.id, sessionId));
}

/** Worker, once the store has the whole file. */
export async function recordingFinished(db: Db, sessionId: string, r: { bytes: number; truncated: boolean }): Promise<void> {
  await db
    .update(terminalSessions)
    .set({ recordingBytes: r.bytes, recordingTruncated: r.truncated, recordingEndedAt: new Date() })
    .where(eq(terminalSessions.id, sessionId));
}

/** Recordings whose session ended more than their org's retention ago (oldest first, `limit` at a time). */
export async function expiredRecordings(db: Db, now: Date, limit: number): Promise<{ id: string; key: string }[]> {
  const t = terminalSessions;
  const rows = await db
    .select({ id: t.id, key: t.recordingKey })
    .from(t)
    .innerJoin(orgs, eq(orgs.id, t.orgId))
    .where(and(isNotNull(t.recordingKey), isNotNull(t.closedAt), lt(t.closedAt, sql`${now.toISOString()}::timestamptz - make_interval(days => ${orgs.recordingRetentionDays})`)))
    .orderBy(t.closedAt)
    .limit(limit);
  return rows.flatMap((r) => (r.key ? [{ id: r.id, key: r.key }] : []));
}

export async function recordingDeleted(db: Db, sessionId: string, now: Date): Promise<void> {
  await db.update(terminalSessions).set({ recordingKey: null, recordingDeletedAt: now }).where(eq(terminalSessions.id, sessionId));
}

/** The viewer audit: who watched which session, from where, from when. Returns the row id. */
export async function viewerJoined(db: Db, v: { sessionId: string; orgId: string; tokenId: string | null; tokenPrefix: string | null; clientAddr: string | null }): Promise<string> {
  const [row] = await db.insert(terminalSessionViewers).values(v).returning({ id: terminalSessionViewers.id });
  return row!.id;
}

export async function viewerLeft(db: Db, id: string): Promise<void> {
  await db
    .update(terminalSessionViewers)
    .set({ endedAt: new Date() })
    .where(and(eq(terminalSessionViewers.id, id), isNull(terminalSessionViewers.endedAt)));
}

/** What the worker needs to start a session's recording: the org's settings and the workspace's name (the title). */
export async function recordingContext(db: Db, orgId: string, workspaceId: string): Promise<(RecordingSettings & { title: string }) | null> {
  const [row] = await db
    .select({ enabled: orgs.recordingEnabled, retentionDays: orgs.recordingRetentionDays, input: orgs.recordingInput, title: workspaces.name })
    .from(orgs)
    .innerJoin(workspaces, eq(workspaces.orgId, orgs.id))
    .where(and(eq(orgs.id, orgId), eq(workspaces.id, workspaceId)));
  return row ?? null;
}

/** Recordings never completed (their worker died) of sessions closed before `closedBefore`. */
export async function abandonedRecordings(db: Db, closedBefore: Date, limit: number): Promise<{ id: string; key: string }[]> {
  const t = terminalSessions;
  const rows = await db
    .select({ id: t.id, key: t.recordingKey })
    .from(t)
    .where(and(isNotNull(t.recordingKey), isNull(t.recordingEndedAt), isNotNull(t.closedAt), lt(t.closedAt, closedBefore)))
    .orderBy(t.closedAt)
    .limit(limit);
  return rows.flatMap((r) => (r.key ? [{ id: r.id, key: r.key }] : []));
}
