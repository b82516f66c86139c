import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eq } from "drizzle-orm";
import { CLOSE, createLogger, createRedis, createRedisWriter, encodeEvent, schema, sessionKeys, workerAliveKey } from "@molecule/shared";
import { waitFor } from "../../../../test/helpers/http.ts";
import { startStack, type Stack } from "../../../../test/helpers/stack.ts";
import { testUrls, uniqueNs } from "../../../../test/helpers/env.ts";
import { TermClient } from "../../../../test/helpers/term-client.ts";
import { createApi, type Api } from "../app.ts";
import type { Timers } from "./timers.ts";

// The watchdog runs on a clock the test moves: worker_lost is judged round by round, never by sleeping.
const WORKER_LOST_MS = 1000;
let s: Stack;
let api: Api;
let wsBase: string;
let token: string;
let orgId: string;
const ns = uniqueNs();
let clock = Date.now();
const intervals: { ms: number; fn: () => void; cleared: boolean }[] = [];
const timers: Timers = {
  setInterval: (fn, ms) => intervals.push({ ms, fn, cleared: false }) - 1,
  clearInterval: (h) => {
    const i = intervals[h as number];
    if (i) i.cleared = true;
  },
  now: () => clock,
};
const live = (ms: number) => intervals.filter((i) => i.ms === ms && !i.cleared);
const log = createLogger("test", "silent");
const redis = createRedis(testUrls().redisUrl);
const sub = createRedis(testUrls().redisUrl);
const writer = createRedisWriter({ url: testUrls().redisUrl, name: `api-${ns}:in`, log });
let intervalsBeforeListen = -1;

beforeAll(async () => {
  s = await startStack({ worker: false });
  ({ token, orgId } = await s.org("watchdog"));
  api = createApi({
    config: {
      ns, nodeId: `api-${ns}`, provider: "local", publicStatus: true, bodyLimitBytes: 65536, createRatePerMin: 100, ticketTtlSec: 60,
      windowBytes: 524288, maxFrameBytes: 1048576, claimTimeoutMs: 5000, inputBytesPerSec: 1048576, inputMsgsPerSec: 2000,
      workerLostMs: WORKER_LOST_MS, allowedOrigins: [],
    },
    db: s.db, redis, sub, writer, log, timers,
  });
  intervalsBeforeListen = intervals.length;
  wsBase = `ws://127.0.0.1:${await api.listen(0, "127.0.0.1")}`;
}, 60_000);
afterAll(async () => {
  await api?.close();
  redis.disconnect();
  sub.disconnect();
  await writer.close();
  await s?.close();
});

/** A v1 client attached to a session that `workerId` claimed and started (the worker's events sent as a worker sends them). */
async function attached(workerId: string) {
  const [w] = await s.db.db
    .insert(schema.workspaces)
    .values({ orgId, name: "wd", runtime: "hermes", tier: 1, status: "ready", provider: "local" })
    .returning({ id: schema.workspaces.id });
  const client = new TermClient(wsBase, w!.id, { token });
  const t = schema.terminalSessions;
  const row = await waitFor(async () => (await s.db.db.select({ id: t.id }).from(t).where(eq(t.workspaceId, w!.id)))[0]);
  await s.db.db.update(t).set({ workerId }).where(eq(t.id, row.id));
  const out = sessionKeys(ns, row.id).out;
  await redis.publish(out, encodeEvent({ kind: "claimed", workerId }));
  await redis.publish(out, encodeEvent({ kind: "ready", workerId, cols: 80, rows: 24 }));
  await client.waitMessage("hello");
  return { client, sessionId: row.id };
}

describe("the worker watchdog", () => {
  it("starts no timer until the API listens; then a sweep every 10 s, and a round every 500 ms only while the node holds sessions", async () => {
    expect(intervalsBeforeListen).toBe(0);
    expect(intervals.map((i) => i.ms)).toEqual([10_000]);
    const workerId = `w-timer-${ns}`;
    await redis.set(workerAliveKey(ns, workerId), "1", "PX", 60_000);
    const { client } = await attached(workerId);
    expect(live(500)).toHaveLength(1);
    client.ws.close();
    await client.closed;
    await waitFor(async () => api.gateway.sessions === 0);
    live(500)[0]!.fn(); // the first round with no session stops the timer
    await waitFor(async () => live(500).length === 0);
    await redis.del(workerAliveKey(ns, workerId));
  });

  it("ends a session with worker_lost once its worker's heartbeat has been missing for workerLostMs, not before", async () => {
    const workerId = `w-gone-${ns}`;
    const { client, sessionId } = await attached(workerId);
    await api.gateway.watchOnce(); // the heartbeat is first seen missing now
    clock += WORKER_LOST_MS - 1;
    await api.gateway.watchOnce();
    expect(client.closeInfo).toBeNull();
    clock += 2;
    await api.gateway.watchOnce();
    const closed = await client.closed;
    expect(closed.code).toBe(CLOSE.worker_lost);
    expect(client.messages.some((m) => m.type === "error" && m.code === "worker_lost")).toBe(true);
    expect(await redis.get(sessionKeys(ns, sessionId).cancel)).toBe("worker_lost");
    const t = schema.terminalSessions;
    const reason = await waitFor(async () => (await s.db.db.select({ r: t.closeReason }).from(t).where(eq(t.id, sessionId)))[0]?.r);
    expect(reason).toBe("worker_lost");
  });

  it("keeps a session whose worker's heartbeat is there, however long it runs", async () => {
    const workerId = `w-live-${ns}`;
    await redis.set(workerAliveKey(ns, workerId), "1", "PX", 60_000);
    const { client } = await attached(workerId);
    for (let i = 0; i < 5; i++) {
      clock += 60_000;
      await api.gateway.watchOnce();
    }
    expect(client.closeInfo).toBeNull();
    expect(api.gateway.sessions).toBe(1);
    client.ws.close();
    await client.closed;
    await redis.del(workerAliveKey(ns, workerId));
  });
});
