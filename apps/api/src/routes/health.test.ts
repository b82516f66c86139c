import type { AddressInfo } from "node:net";
import express from "express";
import { Redis } from "ioredis";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { testUrls } from "../../../../test/helpers/env.ts";
import { healthRoutes, READY_REUSE_MS } from "./health.ts";

const sql = postgres(testUrls().databaseUrl, { max: 1 });
const redis = new Redis(testUrls().redisUrl, { lazyConnect: false });
afterAll(async () => {
  await sql.end({ timeout: 2 });
  redis.disconnect();
});

/** The router on a real server, with PostgreSQL and Redis round trips counted. */
async function serve(o: { redis?: Redis; draining?: () => boolean } = {}) {
  let clock = 1_000_000;
  const counts = { pg: 0, redis: 0 };
  const r = o.redis ?? redis;
  const countedSql = ((...a: Parameters<typeof sql>) => {
    counts.pg++;
    return sql(...a);
  }) as unknown as postgres.Sql;
  const countedRedis = Object.assign(Object.create(r) as Redis, {
    ping: () => {
      counts.redis++;
      return r.ping();
    },
  });
  const app = express().use(healthRoutes({ sql: countedSql, redis: countedRedis, isDraining: o.draining ?? (() => false), now: () => clock }));
  const server = app.listen(0, "127.0.0.1");
  await new Promise((res) => server.once("listening", res));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/readyz`;
  return {
    counts,
    advance: (ms: number) => (clock += ms),
    get: async () => {
      const res = await fetch(url);
      return { status: res.status, date: res.headers.get("date"), body: (await res.json()) as Record<string, unknown> };
    },
    close: () => new Promise((res) => server.close(res)),
  };
}

describe("/readyz", () => {
  it("reuses a successful probe for READY_REUSE_MS, then probes again; draining shows at once", async () => {
    let draining = false;
    const s = await serve({ draining: () => draining });
    try {
      expect((await s.get()).status).toBe(200);
      expect(s.counts).toEqual({ pg: 1, redis: 1 });
      s.advance(READY_REUSE_MS - 1);
      expect((await s.get()).status).toBe(200);
      expect(s.counts).toEqual({ pg: 1, redis: 1 });
      draining = true;
      const d = await s.get();
      expect(d.status).toBe(503);
      expect((d.body.error as { details: unknown }).details).toMatchObject({ draining: true });
      draining = false;
      s.advance(2);
      expect((await s.get()).status).toBe(200);
      expect(s.counts).toEqual({ pg: 2, redis: 2 });
    } finally {
      await s.close();
    }
  });

  it("answers without a Date header (writing one arms a timer that wakes an idle node after every check)", async () => {
    const s = await serve();
    try {
      const r = await s.get();
      expect(r.status).toBe(200);
      expect(r.date).toBeNull();
    } finally {
      await s.close();
    }
  });

  it("never reuses a failure: each check asks again", async () => {
    const down = new Redis({ host: "127.0.0.1", port: 1, lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    down.on("error", () => {});
    const s = await serve({ redis: down });
    try {
      for (let i = 1; i <= 2; i++) {
        const r = await s.get();
        expect(r.status).toBe(503);
        expect((r.body.error as { details: unknown }).details).toMatchObject({ postgres: "ok", redis: "unreachable" });
        expect(s.counts.redis).toBe(i);
      }
    } finally {
      await s.close();
      down.disconnect();
    }
  });
});
