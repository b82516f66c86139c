import { randomUUID } from "node:crypto";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testUrls, uniqueNs } from "../../../test/helpers/env.ts";
import { startTcpProxy, type TcpProxy } from "../../../test/helpers/tcp-proxy.ts";
import { applyOutboxEntries, createAuditOutbox, type AuditClose, type OutboxTimers } from "./audit-outbox.ts";
import { createRedis } from "./config.ts";
import { createDb, type DbHandle } from "./db/client.ts";
import * as schema from "./db/schema.ts";
import { createLogger } from "./logger.ts";
import { auditOutboxKey } from "./redis-keys.ts";

const log = createLogger("test", process.env.TEST_LOG_LEVEL ?? "silent");
let direct: DbHandle;
/** The outbox's own connection to PostgreSQL, through a proxy the test takes down. */
let viaProxy: DbHandle;
let proxy: TcpProxy;
let redis: ReturnType<typeof createRedis>;
let workspaceId: string;
let orgId: string;

beforeAll(async () => {
  const url = new URL(testUrls().databaseUrl);
  direct = createDb(url.toString(), { max: 2 });
  proxy = await startTcpProxy(Number(url.port || 5432), url.hostname);
  url.hostname = "127.0.0.1";
  url.port = String(proxy.port);
  viaProxy = createDb(url.toString(), { max: 2 });
  redis = createRedis(testUrls().redisUrl);
  const [org] = await direct.db.insert(schema.orgs).values({ name: `outbox-${uniqueNs()}` }).returning({ id: schema.orgs.id });
  orgId = org!.id;
  const [w] = await direct.db
    .insert(schema.workspaces)
    .values({ orgId, name: "outbox", runtime: "hermes", tier: 1, status: "ready", provider: "local" })
    .returning({ id: schema.workspaces.id });
  workspaceId = w!.id;
});
afterAll(async () => {
  await proxy?.close();
  await viaProxy?.close();
  await direct?.close();
  redis?.disconnect();
});

/** Timers the test fires by hand: what is scheduled, and after how long. */
function manualTimers() {
  const queue: { fn: () => void; ms: number }[] = [];
  const timers: OutboxTimers = {
    setTimeout: (fn, ms) => {
      const t = { fn, ms };
      queue.push(t);
      return t;
    },
    clearTimeout: (h) => {
      const i = queue.indexOf(h as (typeof queue)[number]);
      if (i >= 0) queue.splice(i, 1);
    },
  };
  return { timers, queue, fire: () => queue.shift()!.fn() };
}

async function openRow(workerId: string | null) {
  const id = randomUUID();
  await direct.db.insert(schema.terminalSessions).values({ id, orgId, workspaceId, workerId, provider: "local" });
  const [row] = await direct.db.select().from(schema.terminalSessions).where(eq(schema.terminalSessions.id, id));
  return row!;
}
const rowOf = async (id: string) => (await direct.db.select().from(schema.terminalSessions).where(eq(schema.terminalSessions.id, id)))[0]!;

function closeOf(sessionId: string, workerId: string, closedAt: number): AuditClose {
  return { sessionId, workerId, reason: "exit", code: 3, signal: null, bytesIn: 17, bytesOut: 4242, closedAt };
}

describe("the audit outbox", () => {
  it("never closes or rewrites a row another worker holds, nor one already closed", async () => {
    const ns = uniqueNs();
    const outbox = createAuditOutbox({ db: viaProxy.db, redis, ns, workerId: "w-me", log, timers: manualTimers().timers });
    const theirs = await openRow("w-other");
    expect(await outbox.close(closeOf(theirs.id, "w-me", Date.now()))).toBe("not_open");
    expect(await rowOf(theirs.id)).toEqual(theirs);
    const mine = await openRow("w-me");
    expect(await outbox.close(closeOf(mine.id, "w-me", Date.now()))).toBe("closed");
    const closed = await rowOf(mine.id);
    expect(closed).toMatchObject({ closeReason: "exit", exitCode: 3, bytesIn: 17, bytesOut: 4242 });
    // A second close (a retry, another node) changes nothing.
    expect(await outbox.close({ ...closeOf(mine.id, "w-me", Date.now() + 5000), reason: "worker_lost", bytesIn: 0 })).toBe("not_open");
    expect(await rowOf(mine.id)).toEqual(closed);
    outbox.stop();
  });

  it("PostgreSQL down at the close: kept in Redis, retried with doubling backoff, applied with the real end time once it is back", async () => {
    const ns = uniqueNs();
    const t = manualTimers();
    const outbox = createAuditOutbox({ db: viaProxy.db, redis, ns, workerId: "w-me", log, retryBaseMs: 100, retryMaxMs: 350, timers: t.timers });
    const row = await openRow("w-me");
    const endedAt = row.openedAt.getTime() + 1234;
    await proxy.down();
    try {
      expect(await outbox.close(closeOf(row.id, "w-me", endedAt))).toBe("queued");
      expect(JSON.parse((await redis.hget(auditOutboxKey(ns), row.id))!)).toMatchObject({ sessionId: row.id, workerId: "w-me", bytesOut: 4242, closedAt: endedAt });
      expect(t.queue.map((x) => x.ms)).toEqual([100]);
      // Still down: each failed retry waits twice as long, up to the maximum.
      for (const next of [200, 350, 350]) {
        t.fire();
        expect(await outbox.retry()).toBe(0);
        expect(t.queue.map((x) => x.ms)).toEqual([next]);
      }
      expect((await rowOf(row.id)).closedAt).toBeNull();
    } finally {
      await proxy.restore();
    }
    t.fire();
    expect(await outbox.retry()).toBe(1);
    const closed = await rowOf(row.id);
    expect(closed).toMatchObject({ closeReason: "exit", exitCode: 3, bytesIn: 17, bytesOut: 4242 });
    expect(closed.closedAt!.getTime()).toBe(endedAt);
    expect(await redis.hexists(auditOutboxKey(ns), row.id)).toBe(0);
    expect(outbox.pending).toBe(0);
    expect(t.queue).toEqual([]);
    outbox.stop();
  });

  it("an entry its worker never applied (it died) is applied by the sweeper's applyOutboxEntries, once; a malformed one is ignored", async () => {
    const ns = uniqueNs();
    const row = await openRow("w-dead");
    const endedAt = row.openedAt.getTime() + 500;
    await proxy.down();
    const outbox = createAuditOutbox({ db: viaProxy.db, redis, ns, workerId: "w-dead", log, timers: manualTimers().timers });
    try {
      expect(await outbox.close(closeOf(row.id, "w-dead", endedAt))).toBe("queued");
    } finally {
      outbox.stop();
      await proxy.restore();
    }
    const bogus = await openRow("w-dead");
    await redis.hset(auditOutboxKey(ns), bogus.id, JSON.stringify({ sessionId: bogus.id, reason: "rm -rf" }));
    const applied = await applyOutboxEntries(direct.db, redis, ns, [row.id, bogus.id], log);
    expect([...applied]).toEqual([row.id]);
    const closed = await rowOf(row.id);
    expect(closed).toMatchObject({ closeReason: "exit", bytesIn: 17, bytesOut: 4242 });
    expect(closed.closedAt!.getTime()).toBe(endedAt);
    expect(await rowOf(bogus.id)).toEqual(bogus);
    expect(await redis.hexists(auditOutboxKey(ns), row.id)).toBe(0);
    expect((await applyOutboxEntries(direct.db, redis, ns, [row.id], log)).size).toBe(0);
    await redis.del(auditOutboxKey(ns));
  });

  it("a restarted worker with the same id takes over the entries it left in Redis", async () => {
    const ns = uniqueNs();
    const row = await openRow("w-again");
    await redis.hset(auditOutboxKey(ns), row.id, JSON.stringify(closeOf(row.id, "w-again", row.openedAt.getTime() + 10)));
    const other = randomUUID();
    await redis.hset(auditOutboxKey(ns), other, JSON.stringify(closeOf(other, "w-someone-else", Date.now())));
    const t = manualTimers();
    const outbox = createAuditOutbox({ db: viaProxy.db, redis, ns, workerId: "w-again", log, timers: t.timers });
    expect(await outbox.recover()).toBe(1);
    t.fire();
    expect(await outbox.retry()).toBe(1);
    expect((await rowOf(row.id)).closeReason).toBe("exit");
    outbox.stop();
    await redis.del(auditOutboxKey(ns));
  });
});
