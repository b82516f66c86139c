import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Job } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDb, createLogger, createRedis, createRedisWriter, type ProvisionJob } from "@molecule/shared";
import { call, readyWorkspace, waitFor } from "../../../../test/helpers/http.ts";
import { startStack, type Stack } from "../../../../test/helpers/stack.ts";
import { uniqueNs } from "../../../../test/helpers/env.ts";
import { createApi } from "../app.ts";

let s: Stack;
let token: string;
beforeAll(async () => {
  s = await startStack();
  token = (await s.org("l")).token;
});
afterAll(() => s.close());

/** Resolves once `st`'s worker has finished the create job of workspace `id`, whatever it decided. Call before the job can end. */
function createJobDone(st: Stack, id: string): Promise<void> {
  const w = st.worker!.provisioning!.worker;
  return new Promise((resolve) => {
    const on = (job: Job<ProvisionJob> | undefined) => {
      if (job?.data.workspaceId !== id || job.data.action !== "create") return;
      w.off("completed", on);
      w.off("failed", on);
      resolve();
    };
    w.on("completed", on);
    w.on("failed", on);
  });
}

const statusOf = async (id: string) => (await call(s.url, "GET", `/workspaces/${id}`)).body.status as string;

describe("lifecycle", () => {
  it("restart re-provisions a ready workspace; illegal moves are 409", async () => {
    const id = await readyWorkspace(s.url, token, "r");
    const r = await call(s.url, "POST", `/workspaces/${id}/restart`, { token });
    expect(r.status).toBe(202);
    expect(r.body.status).toBe("restarting");
    // A second restart while restarting is refused.
    const again = await call(s.url, "POST", `/workspaces/${id}/restart`, { token });
    if (again.status !== 202) {
      expect(again.status).toBe(409);
      expect(again.body.error.code).toBe("conflict");
    }
    await waitFor(async () => (await statusOf(id)) === "ready", 5000);
    expect(existsSync(join(s.sandboxRoot, id))).toBe(true);
    await call(s.url, "DELETE", `/workspaces/${id}`, { token });
    await waitFor(async () => (await statusOf(id)) === "removed", 5000);
    const dead = await call(s.url, "POST", `/workspaces/${id}/restart`, { token });
    expect(dead.status).toBe(409);
    expect(existsSync(join(s.sandboxRoot, id))).toBe(false);
  });

  it("a delete during provisioning ends removed with nothing left behind", async () => {
    const slow = await startStack({ local: { provisionDelayMs: 800 } });
    try {
      const t = (await slow.org("slow")).token;
      const id = (await call(slow.url, "POST", "/workspaces", { token: t, body: { name: "d" } })).body.id as string;
      const created = createJobDone(slow, id);
      await waitFor(async () => existsSync(join(slow.sandboxRoot, id)), 3000, 10);
      const del = await call(slow.url, "DELETE", `/workspaces/${id}`, { token: t });
      expect(del.body.status).toBe("removing");
      await waitFor(async () => (await call(slow.url, "GET", `/workspaces/${id}`)).body.status === "removed", 8000);
      // The create job finishing later must not resurrect it.
      await created;
      expect((await call(slow.url, "GET", `/workspaces/${id}`)).body.status).toBe("removed");
      expect(existsSync(join(slow.sandboxRoot, id))).toBe(false);
    } finally {
      await slow.close();
    }
  });

  it("a provisioning that takes longer than the timeout becomes failed with a message", async () => {
    // Its own database: a 1 s timeout sweeper would fail every other test's provisioning workspaces.
    // The worker's clock stands still (before the workspace exists) until the test lets it run
    // 1.1 s ahead; its own sweeper runs every 0.5 s by it, however slow the machine.
    let frozen: number | null = Date.now();
    const clock = () => frozen ?? Date.now() + 1100;
    const slow = await startStack({ local: { provisionDelayMs: 3000 }, worker: { provisionTimeoutMs: 1000 }, ownDatabase: true, workerClock: clock });
    try {
      const t = (await slow.org("to")).token;
      const id = (await call(slow.url, "POST", "/workspaces", { token: t, body: { name: "t" } })).body.id as string;
      const created = createJobDone(slow, id);
      expect(await slow.worker!.provisioning!.sweepTimeouts()).toBe(0);
      expect((await call(slow.url, "GET", `/workspaces/${id}`, { token: t })).body.status).toBe("provisioning");
      // Past the 1 s timeout: the background sweep fails it.
      frozen = null;
      await waitFor(async () => (await call(slow.url, "GET", `/workspaces/${id}`, { token: t })).body.status === "failed", 5000);
      const w = await call(slow.url, "GET", `/workspaces/${id}`, { token: t });
      expect(w.body.status).toBe("failed");
      expect(w.body.error).toMatch(/did not finish within 1 s/);
      // The late create does not flip it to ready; a restart recovers it.
      await created;
      expect((await call(slow.url, "GET", `/workspaces/${id}`)).body.status).toBe("failed");
    } finally {
      await slow.close();
    }
  });

  it("lists newest first with cursor pagination and a status filter", async () => {
    const t = (await s.org("page")).token;
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await call(s.url, "POST", "/workspaces", { token: t, body: { name: `p${i}` } })).body.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const q: string = cursor ? `?limit=3&cursor=${cursor}` : "?limit=3";
      const page = await call(s.url, "GET", `/workspaces${q}`, { token: t });
      expect(page.status).toBe(200);
      expect(page.body.workspaces.length).toBeLessThanOrEqual(3);
      seen.push(...page.body.workspaces.map((w: { id: string }) => w.id));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());
    await waitFor(async () => {
      const r = await call(s.url, "GET", "/workspaces?status=ready&limit=200", { token: t });
      return r.body.workspaces.length === 7;
    });
    expect((await call(s.url, "GET", "/workspaces?status=failed", { token: t })).body.workspaces).toEqual([]);
  });

  it("200 workspaces created concurrently by 4 orgs all become ready, once each; each org lists only its own", async () => {
    const orgs = await Promise.all([1, 2, 3, 4].map((i) => s.org(`bulk${i}`)));
    const created = await Promise.all(
      Array.from({ length: 200 }, (_, i) => {
        const o = orgs[i % 4]!;
        return call(s.url, "POST", "/workspaces", { token: o.token, body: { name: `bulk-${i}` } }).then((r) => ({ org: o.orgId, r }));
      }),
    );
    expect(created.every((c) => c.r.status === 201)).toBe(true);
    const ids = created.map((c) => c.r.body.id as string);
    await waitFor(async () => {
      const rows = await s.db.sql`select count(*)::int as n from workspaces where id = any(${ids}) and status = 'ready'`;
      return rows[0]!.n === 200;
    }, 60_000, 200);
    const readyEvents = await s.db.sql`select workspace_id, count(*)::int as n from workspace_events where workspace_id = any(${ids}) and to_status = 'ready' group by workspace_id`;
    expect(readyEvents.length).toBe(200);
    expect(readyEvents.every((e) => e.n === 1)).toBe(true);
    for (const o of orgs) {
      const list = await call(s.url, "GET", "/workspaces?limit=200", { token: o.token });
      const mine = created.filter((c) => c.org === o.orgId).map((c) => c.r.body.id);
      expect(new Set(list.body.workspaces.map((w: { id: string }) => w.id))).toEqual(new Set(mine));
    }
  });
});

describe("outages", () => {
  it("answers 503 with a clear JSON error when PostgreSQL is unreachable, quickly", async () => {
    const db = createDb("postgres://postgres@127.0.0.1:1/nowhere", { max: 1 });
    const redis = createRedis(process.env.MOLECULE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379");
    const sub = createRedis(process.env.MOLECULE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379");
    const writer = createRedisWriter({ url: process.env.MOLECULE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379", name: "pg-down:in", log: createLogger("test", "silent") });
    const api = createApi({
      config: {
        ns: uniqueNs(), nodeId: "pg-down", provider: "local", publicStatus: true, bodyLimitBytes: 65536, createRatePerMin: 100,
        ticketTtlSec: 60, windowBytes: 524288, maxFrameBytes: 1048576, claimTimeoutMs: 5000, inputBytesPerSec: 1048576,
        inputMsgsPerSec: 2000, workerLostMs: 2000, allowedOrigins: [],
      },
      db, redis, sub, writer, log: createLogger("test", "silent"),
    });
    const port = await api.listen(0, "127.0.0.1");
    try {
      const t0 = performance.now();
      const r = await call(`http://127.0.0.1:${port}`, "GET", "/workspaces", { token: `mol_${"a".repeat(43)}` });
      expect(r.status).toBe(503);
      expect(r.body.error).toMatchObject({ code: "unavailable" });
      expect(r.body.error.message).toMatch(/database/);
      expect(performance.now() - t0).toBeLessThan(5000);
      const ready = await call(`http://127.0.0.1:${port}`, "GET", "/readyz");
      expect(ready.status).toBe(503);
      expect(ready.body.error.details.postgres).toBe("unreachable");
      expect((await call(`http://127.0.0.1:${port}`, "GET", "/healthz")).status).toBe(200);
    } finally {
      await api.close();
      redis.disconnect();
      sub.disconnect();
      await writer.close();
      await db.close();
    }
  });
});

describe("OpenAPI", () => {
  it("serves an OpenAPI 3.1 document generated from the request schemas", async () => {
    const r = await call(s.url, "GET", "/openapi.json");
    expect(r.status).toBe(200);
    expect(r.body.openapi).toBe("3.1.0");
    const create = r.body.components.schemas.CreateWorkspace;
    expect(create.required).toEqual(["name"]);
    expect(create.properties.runtime.enum).toContain("hermes");
    expect(create.properties.tier).toMatchObject({ minimum: 1, maximum: 4 });
    expect(create.additionalProperties).toBe(false);
    expect(Object.keys(r.body.paths)).toEqual(
      expect.arrayContaining(["/workspaces", "/workspaces/{id}", "/workspaces/{id}/restart", "/workspaces/{id}/terminal", "/workspaces/{id}/terminal/tickets", "/workspaces/{id}/terminal/sessions"]),
    );
  });
});
