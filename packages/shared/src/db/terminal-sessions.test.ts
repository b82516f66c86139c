import { randomUUID } from "node:crypto";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testUrls, uniqueNs } from "../../../../test/helpers/env.ts";
import { createDb, type DbHandle } from "./client.ts";
import * as schema from "./schema.ts";
import {
  claimTerminalSession,
  claimTerminalSessionRecording,
  closeHeldSession,
  closeUnheldSession,
  insertTerminalSession,
  openSessionIds,
  recordSessionTarget,
  reportSessionBytes,
} from "./terminal-sessions.ts";

let handle: DbHandle;
let orgId: string;
let workspaceId: string;

beforeAll(async () => {
  handle = createDb(testUrls().databaseUrl, { max: 2 });
  const [org] = await handle.db.insert(schema.orgs).values({ name: `sessions-${uniqueNs()}` }).returning({ id: schema.orgs.id });
  orgId = org!.id;
  const [w] = await handle.db
    .insert(schema.workspaces)
    .values({ orgId, name: "sessions", runtime: "hermes", tier: 1, status: "ready", provider: "local" })
    .returning({ id: schema.workspaces.id });
  workspaceId = w!.id;
});
afterAll(async () => {
  await handle?.close();
});

const rowOf = async (id: string) => (await handle.db.select().from(schema.terminalSessions).where(eq(schema.terminalSessions.id, id)))[0]!;

async function opened(): Promise<string> {
  const id = randomUUID();
  await insertTerminalSession(handle.db, {
    id,
    orgId,
    workspaceId,
    tokenId: null,
    tokenPrefix: "mol_test",
    clientAddr: "127.0.0.1",
    userAgent: "test",
    provider: "local",
    instanceId: null,
  });
  return id;
}

describe("the terminal_sessions table", () => {
  it("a claim that records names the recording in the same statement when the org records, and returns its settings", async () => {
    const id = await opened();
    const key = `${orgId}/${workspaceId}/${id}.tape`;
    expect(await claimTerminalSessionRecording(handle.db, id, "w-a", key)).toEqual({ enabled: true, retentionDays: 30, input: false, title: "sessions" });
    expect(await rowOf(id)).toMatchObject({ workerId: "w-a", recordingKey: key, recordingBytes: 0 });
    // The same rule as the plain claim: another worker, or a closed row, claims nothing and names nothing.
    expect(await claimTerminalSessionRecording(handle.db, id, "w-b", "other")).toBeNull();
    expect(await rowOf(id)).toMatchObject({ workerId: "w-a", recordingKey: key });
    expect(await closeHeldSession(handle.db, { sessionId: id, workerId: "w-a", reason: "exit", code: 0, signal: null, bytesIn: 0, bytesOut: 0, closedAt: Date.now() })).toBe(true);
    expect(await claimTerminalSessionRecording(handle.db, id, "w-a", key)).toBeNull();

    // An org that does not record: claimed, nothing named.
    await handle.db.update(schema.orgs).set({ recordingEnabled: false, recordingInput: true }).where(eq(schema.orgs.id, orgId));
    try {
      const off = await opened();
      expect(await claimTerminalSessionRecording(handle.db, off, "w-a", `${orgId}/${workspaceId}/${off}.tape`)).toMatchObject({ enabled: false, input: true });
      expect(await rowOf(off)).toMatchObject({ workerId: "w-a", recordingKey: null, recordingBytes: null });
    } finally {
      await handle.db.update(schema.orgs).set({ recordingEnabled: true, recordingInput: false }).where(eq(schema.orgs.id, orgId));
    }
  });

  it("one worker holds a row: others can neither claim, count, annotate nor close it", async () => {
    const id = await opened();
    expect(await openSessionIds(handle.db, workspaceId)).toContain(id);
    expect(await claimTerminalSession(handle.db, id, "w-a")).toBe(true);
    // Claiming again is the same worker's right (a retried claim); anyone else gets nothing.
    expect(await claimTerminalSession(handle.db, id, "w-a")).toBe(true);
    expect(await claimTerminalSession(handle.db, id, "w-b")).toBe(false);

    await reportSessionBytes(handle.db, "w-b", [{ sessionId: id, bytesIn: 99, bytesOut: 99 }]);
    await recordSessionTarget(handle.db, id, "w-b", { osUser: "mallory" });
    await closeUnheldSession(handle.db, id, "no_capacity");
    expect(await rowOf(id)).toMatchObject({ workerId: "w-a", bytesIn: 0, bytesOut: 0, osUser: null, closedAt: null });

    await reportSessionBytes(handle.db, "w-a", [{ sessionId: id, bytesIn: 3, bytesOut: 12 }]);
    await recordSessionTarget(handle.db, id, "w-a", { osUser: "alice" });
    expect(await rowOf(id)).toMatchObject({ bytesIn: 3, bytesOut: 12, osUser: "alice" });
    // Several sessions in one statement, each row its own counts; a row another worker holds is left alone.
    const other = await opened();
    expect(await claimTerminalSession(handle.db, other, "w-a")).toBe(true);
    const foreign = await opened();
    expect(await claimTerminalSession(handle.db, foreign, "w-b")).toBe(true);
    await reportSessionBytes(handle.db, "w-a", [
      { sessionId: id, bytesIn: 3, bytesOut: 13 },
      { sessionId: other, bytesIn: 7, bytesOut: 70 },
      { sessionId: foreign, bytesIn: 9, bytesOut: 90 },
    ]);
    expect(await rowOf(id)).toMatchObject({ bytesIn: 3, bytesOut: 13 });
    expect(await rowOf(other)).toMatchObject({ bytesIn: 7, bytesOut: 70 });
    expect(await rowOf(foreign)).toMatchObject({ bytesIn: 0, bytesOut: 0 });

    const close = { sessionId: id, reason: "exit" as const, code: 0, signal: null, bytesIn: 4, bytesOut: 20, closedAt: Date.now() };
    expect(await closeHeldSession(handle.db, { ...close, workerId: "w-b" })).toBe(false);
    expect(await closeHeldSession(handle.db, { ...close, workerId: "w-a" })).toBe(true);
    // Closed once: a second close, or a claim of the closed row, changes nothing.
    expect(await closeHeldSession(handle.db, { ...close, workerId: "w-a", reason: "worker_lost" })).toBe(false);
    expect(await claimTerminalSession(handle.db, id, "w-a")).toBe(false);
    expect(await rowOf(id)).toMatchObject({ closeReason: "exit", exitCode: 0, bytesIn: 4, bytesOut: 20 });
    expect(await openSessionIds(handle.db, workspaceId)).not.toContain(id);
  });

  it("the API closes a row nobody holds, or one held by the worker it names as gone, and no other", async () => {
    const unclaimed = await opened();
    await closeUnheldSession(handle.db, unclaimed, "no_capacity");
    expect(await rowOf(unclaimed)).toMatchObject({ closeReason: "no_capacity" });

    const held = await opened();
    await claimTerminalSession(handle.db, held, "w-live");
    await closeUnheldSession(handle.db, held, "worker_lost", "w-dead");
    expect((await rowOf(held)).closedAt).toBeNull();
    await closeUnheldSession(handle.db, held, "worker_lost", "w-live");
    expect(await rowOf(held)).toMatchObject({ closeReason: "worker_lost" });
  });
});
