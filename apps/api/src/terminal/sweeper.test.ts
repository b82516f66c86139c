import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eq } from "drizzle-orm";
import { schema, sessionKeys, workerAliveKey } from "@molecule/shared";
import { startStack, type Stack } from "../../../../test/helpers/stack.ts";

// A database of its own: a thousand open audit rows would slow every other test's sweeper.
let s: Stack;
beforeAll(async () => {
  s = await startStack({ worker: false, ownDatabase: true });
}, 60_000);
afterAll(() => s?.close());

const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000);

describe("the audit sweeper", () => {
  it("closes rows of dead workers and unclaimed sessions even behind a thousand rows it must leave open, and not a live worker's", async () => {
    const org = await s.org("sweep");
    const [w] = await s.db.db
      .insert(schema.workspaces)
      .values({ orgId: org.orgId, name: "sweep", runtime: "hermes", tier: 1, status: "ready", provider: "local" })
      .returning({ id: schema.workspaces.id });
    const row = (openedAt: Date, workerId: string | null) => ({
      id: randomUUID(),
      orgId: org.orgId,
      workspaceId: w!.id,
      workerId,
      provider: "local",
      openedAt,
    });
    // Open rows whose session state is in no Redis this node sees (another deployment on the same
    // database, or lost with a Redis restart): judged only after a day, so they stay open.
    const unknown = Array.from({ length: 1200 }, (_, i) => row(minutesAgo(120 - i / 100), `elsewhere-${i % 7}`));
    await s.db.db.insert(schema.terminalSessions).values(unknown);
    // Newer than all of those: a session whose worker died unwatched, one never claimed, and a day-old one.
    const deadWorker = row(minutesAgo(30), `w-dead-${s.ns}`);
    const unclaimed = row(minutesAgo(29), null);
    const ancient = row(minutesAgo(25 * 60), null);
    // And one whose worker is alive (its heartbeat is there): a long session, not to be touched.
    const live = row(minutesAgo(31), `w-live-${s.ns}`);
    await s.db.db.insert(schema.terminalSessions).values([deadWorker, unclaimed, ancient, live]);
    await s.redis.set(workerAliveKey(s.ns, live.workerId!), "1", "PX", 60_000);
    await s.redis.hset(sessionKeys(s.ns, live.id).meta, { state: "running", worker: live.workerId! });
    await s.redis.hset(sessionKeys(s.ns, deadWorker.id).meta, { state: "running", worker: deadWorker.workerId! });
    await s.redis.hset(sessionKeys(s.ns, unclaimed.id).meta, { state: "pending" });

    expect(await s.api.gateway.sweep()).toBe(3);
    const reason = async (id: string) =>
      (await s.db.db.select({ r: schema.terminalSessions.closeReason }).from(schema.terminalSessions).where(eq(schema.terminalSessions.id, id)))[0]?.r;
    expect(await reason(deadWorker.id)).toBe("worker_lost");
    expect(await reason(unclaimed.id)).toBe("no_capacity");
    expect(await reason(ancient.id)).toBe("no_capacity");
    const stillOpen = await s.db.sql`SELECT count(*)::int AS n FROM terminal_sessions WHERE closed_at IS NULL`;
    expect(await reason(live.id)).toBeNull();
    expect(stillOpen[0]!.n).toBe(1201);
    // The next sweep starts over and finds nothing more to close.
    expect(await s.api.gateway.sweep()).toBe(0);
    await s.redis.del(sessionKeys(s.ns, deadWorker.id).meta, sessionKeys(s.ns, unclaimed.id).meta, sessionKeys(s.ns, live.id).meta, workerAliveKey(s.ns, live.workerId!));
  });
});
