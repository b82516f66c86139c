/**
 * The terminal contract on a real Redis Cluster (3 primaries, 3 replicas): the
 * same API and worker processes as test/terminal-failover.test.ts,
 * worker-crash.test.ts and flood.test.ts, started with REDIS_CLUSTER_NODES.
 * Open and echo, re-attach through another API node mid-output, flow control,
 * worker_lost, cancellation; then a whole shard down (its sessions end with a
 * clear reason, the others do not notice). Nothing reaches the single Redis.
 */
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TERMINAL_QUEUE, bullPrefix, createRedis, keySlot, redisTarget, sessionKeys } from "@molecule/shared";
import { testUrls } from "../helpers/env.ts";
import { call, readyWorkspace, waitFor } from "../helpers/http.ts";
import { openShell, TermClient } from "../helpers/term-client.ts";
import { startTopology, type Topology } from "../helpers/topology.ts";
import { startRedisCluster, type RedisClusterHandle } from "./harness.ts";

const SHARD_LOST_MS = 7000;
let c: RedisClusterHandle;
let t: Topology;
let ws: string;
beforeAll(async () => {
  c = await startRedisCluster();
  // REDIS_SHARD_LOST_MS: a failover here (cluster-node-timeout 1 s) takes 2-2.5 s when the machine is
  // quiet and went past 3 s under a full test run's load, ending a session it should only delay.
  t = await startTopology({ apis: 2, workers: 1, env: { REDIS_CLUSTER_NODES: c.seeds, REDIS_SHARD_LOST_MS: String(SHARD_LOST_MS), MOLECULE_CLAIM_TIMEOUT_MS: "3000", MOLECULE_DRAIN_TIMEOUT_MS: "1000" } });
  ws = await readyWorkspace(t.apis[0]!.url, t.token);
}, 90_000);
afterAll(async () => {
  await t?.close();
  await c?.close();
});

function expectEveryLineOnce(text: string, n: number): void {
  const nums = [...text.matchAll(/^line (\d+)\r?$/gm)].map((m) => Number(m[1]));
  expect(nums.length).toBe(n);
  for (let i = 0; i < n; i++) if (nums[i] !== i + 1) throw new Error(`line ${i + 1} is ${nums[i]} (lost, repeated or reordered)`);
}

const sessionRow = async (id: string) => (await call(t.apis[0]!.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token: t.token })).body.sessions.find((s: { id: string }) => s.id === id);

describe("the terminal contract on a Redis Cluster", () => {
  it("open and echo; the session's keys and channel live on its slot's shard only", async () => {
    const s = await openShell(t.apis[0]!.wsUrl, ws, { token: t.token });
    expect((await s.run("echo cluster-$((6*7))")).trim()).toBe("cluster-42");
    const k = sessionKeys(t.ns, s.hello!.session);
    const owner = await c.ownerOf(keySlot(k.log));
    const primaries = (await c.topology()).filter((l) => l.flags.includes("master")).map((l) => l.port);
    for (const p of primaries) {
      const r = new Redis({ host: "127.0.0.1", port: p, lazyConnect: true });
      await r.connect();
      try {
        const [, subs] = (await r.call("PUBSUB", "SHARDNUMSUB", k.out, k.in)) as [string, number, string, number];
        // The API node listens on out, the worker on in: both on the owner, nowhere else.
        expect(Number(subs), `subscribers of out on ${p}`).toBe(p === owner ? 1 : 0);
        const n = Number(await r.cluster("COUNTKEYSINSLOT", keySlot(k.log)));
        if (p === owner) expect(n).toBeGreaterThan(0);
        else expect(n).toBe(0);
      } finally {
        r.disconnect();
      }
    }
    await s.close();
  });

  it("SIGKILL the API node mid-output: re-attach on the other node gets every line exactly once, in order", async () => {
    const [a, b] = t.apis as [(typeof t.apis)[0], (typeof t.apis)[0]];
    const s = await openShell(a.wsUrl, ws, { token: t.token });
    const start = s.offset;
    s.send("stty -echo; for i in $(seq 1 2000); do echo line $i; [ $((i % 10)) = 0 ] && sleep 0.005; done; echo counter-$((1))-done; stty echo\r");
    await s.waitText(/^line 200\r$/m);
    a.proc.child.kill("SIGKILL");
    await s.closed;
    const r = await openShell(b.wsUrl, ws, { token: t.token, session: s.hello!.session, offset: s.offset });
    await r.waitText("counter-1-done", 90_000);
    expect(r.messages.filter((m) => m.type === "gap")).toEqual([]);
    const all = Buffer.concat([s.output.subarray(0), r.output]).toString("utf8");
    expectEveryLineOnce(all.slice(Buffer.from(s.output.subarray(0, start - s.base)).toString("utf8").length), 2000);
    await r.close();
    t.apis.splice(0, 1);
    await t.addApi();
  }, 150_000);

  it("flow control: a client consuming 1 MB/s never has more than the window in flight; Ctrl-C brings the prompt back", async () => {
    const s = await openShell(t.apis[0]!.wsUrl, ws, { token: t.token, autoAck: false });
    await s.run("true");
    s.ack();
    let consumed = s.offset;
    const start = consumed;
    let worst = 0;
    const pacer = setInterval(() => {
      worst = Math.max(worst, s.offset - consumed);
      consumed = Math.min(s.offset, consumed + 100_000);
      s.ack(consumed);
    }, 100);
    try {
      s.send("yes\r");
      await s.until(() => consumed - start >= 2_000_000, 15_000, "2 MB consumed at 1 MB/s");
    } finally {
      clearInterval(pacer);
    }
    // The worker paused the shell at the window (512 KiB): the flood never ran ahead of the client.
    expect(worst).toBeLessThanOrEqual(512 * 1024 + 100_000);
    s.autoAck = true;
    s.ack();
    s.send("\x03");
    s.send("echo __BA''CK__\r");
    await s.waitText(/__BACK__\r\n/, 10_000);
    await s.close();
  });

  it("SIGKILL the worker: worker_lost (4500) within 5 s, the audit row closed", async () => {
    const s = await openShell(t.apis[0]!.wsUrl, ws, { token: t.token });
    await s.run("true");
    const t0 = performance.now();
    t.workers[0]!.proc.child.kill("SIGKILL");
    const err = await s.waitMessage("error", 8000);
    expect(err.code).toBe("worker_lost");
    expect((await s.closed).code).toBe(4500);
    expect(performance.now() - t0).toBeLessThan(5000);
    const row = await waitFor(async () => {
      const r = await sessionRow(s.hello!.session);
      return r?.closed_at ? r : null;
    });
    expect(row.close_reason).toBe("worker_lost");
  });

  it("cancellation: a client that leaves before any worker claims its session never gets a shell", async () => {
    // No worker runs now (the last test killed it): the session's job waits in the queue.
    const redis = createRedis(redisTarget({ REDIS_URL: testUrls().redisUrl, REDIS_CLUSTER_NODES: c.seeds }));
    const queue = new Queue(TERMINAL_QUEUE, { connection: redis, prefix: bullPrefix(t.ns) });
    try {
      // Session jobs only: the killed worker's lost sessions left hang-up jobs waiting too.
      const sessionJobs = async () => (await queue.getWaiting()).filter((j) => j.name === "session").length;
      const waiting = await sessionJobs();
      const since = Date.now();
      const s = new TermClient(t.apis[0]!.wsUrl, ws, { token: t.token });
      await s.opened;
      await waitFor(async () => (await sessionJobs()) > waiting, 5000, 20);
      await s.close(1000);
      await t.addWorker();
      const d = await openShell(t.apis[0]!.wsUrl, ws, { token: t.token });
      expect((await d.run("echo alive")).trim()).toBe("alive");
      // This test's rows (a session of an earlier test, held by the worker killed before, is the sweeper's to close).
      const all = (await call(t.apis[0]!.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token: t.token })).body.sessions.filter(
        (r: { opened_at: string }) => Date.parse(r.opened_at) >= since - 1000,
      );
      const open = all.filter((r: { closed_at: string | null }) => !r.closed_at);
      expect(open.map((r: { id: string }) => r.id)).toEqual([d.hello!.session]);
      const abandoned = all.filter((r: { close_reason: string; worker_id: string | null }) => r.close_reason === "client_closed" && r.worker_id === null);
      expect(abandoned.length).toBe(1);
      await d.close();
    } finally {
      await queue.close();
      redis.disconnect();
    }
  });

  it("the session's slot migrated to another primary mid-output: every line exactly once, in order", async () => {
    const s = await openShell(t.apis[0]!.wsUrl, ws, { token: t.token });
    const start = s.offset;
    const slot = keySlot(sessionKeys(t.ns, s.hello!.session).log);
    const from = await c.ownerOf(slot);
    const to = (await c.topology()).find((l) => l.flags.includes("master") && !l.flags.includes("fail") && l.port !== from)!.port;
    s.send("stty -echo; for i in $(seq 1 3000); do echo line $i; [ $((i % 10)) = 0 ] && sleep 0.005; done; echo migrated-$((1))-done; stty echo\r");
    await s.waitText(/^line 100\r$/m);
    await c.migrateSlot(slot, to);
    expect(await c.ownerOf(slot)).toBe(to);
    // The slot moved while the output was still coming.
    expect(s.output.includes("migrated-1-done")).toBe(false);
    await s.waitText("migrated-1-done", 60_000);
    expect(s.messages.filter((m) => m.type === "gap")).toEqual([]);
    expectEveryLineOnce(Buffer.from(s.output.subarray(start - s.base)).toString("utf8"), 3000);
    // Input still reaches the shell (the worker's subscription followed the slot too).
    expect((await s.run("echo moved-$((5*5))")).trim()).toBe("moved-25");
    await s.close();
  }, 90_000);

  it("the session's primary killed mid-output: its replica takes over, the session goes on; no byte lost or a gap, never silent", async () => {
    const s = await openShell(t.apis[0]!.wsUrl, ws, { token: t.token });
    const start = s.offset;
    const slot = keySlot(sessionKeys(t.ns, s.hello!.session).log);
    const victim = await c.ownerOf(slot);
    s.send("stty -echo; for i in $(seq 1 3000); do echo line $i; [ $((i % 10)) = 0 ] && sleep 0.005; done; echo failover-$((1))-done; stty echo\r");
    await s.waitText(/^line 100\r$/m);
    await c.kill(victim);
    // Killed while the output was still coming.
    expect(s.output.includes("failover-1-done")).toBe(false);
    expect(await c.waitFailover(victim, slot)).not.toBe(victim);
    await s.waitText("failover-1-done", 60_000);
    const text = Buffer.from(s.output.subarray(start - s.base)).toString("utf8");
    const gaps = s.messages.filter((m) => m.type === "gap");
    if (gaps.length === 0) expectEveryLineOnce(text, 3000);
    else {
      // Replication lost entries the worker could no longer re-send: said so, and nothing repeated or reordered.
      const nums = [...text.matchAll(/^line (\d+)\r?$/gm)].map((m) => Number(m[1]));
      for (let i = 1; i < nums.length; i++) expect(nums[i]!).toBeGreaterThan(nums[i - 1]!);
    }
    expect((await s.run("echo promoted-$((6*6))")).trim()).toBe("promoted-36");
    await s.close();
  }, 90_000);

  it("nothing of this deployment reached the single Redis", async () => {
    const single = new Redis(testUrls().redisUrl);
    try {
      const [, keys] = await single.scan("0", "MATCH", `*${t.ns}*`, "COUNT", 100_000);
      expect(keys).toEqual([]);
    } finally {
      single.disconnect();
    }
  });

  it("a whole shard down: its sessions end with store_unavailable (4504); sessions on other shards do not notice", async () => {
    // Sessions until two sit on different shards.
    const open: TermClient[] = [];
    const shardOf = async (s: TermClient) => c.ownerOf(keySlot(sessionKeys(t.ns, s.hello!.session).log));
    let a: TermClient | null = null;
    let b: TermClient | null = null;
    for (let i = 0; i < 12 && !b; i++) {
      const s = await openShell(t.apis[0]!.wsUrl, ws, { token: t.token });
      open.push(s);
      if (!a) a = s;
      else if ((await shardOf(s)) !== (await shardOf(a))) b = s;
    }
    if (!a || !b) throw new Error("no two sessions on different shards");
    for (const s of open) if (s !== a && s !== b) await s.close();
    const victim = await shardOf(a);
    const replicas = await c.replicasOf(victim);
    await Promise.all([victim, ...replicas].map((p) => c.kill(p)));
    const t0 = performance.now();
    // The other shard's session goes on while the dead one is being given up.
    expect((await b.run("echo still-$((1+1))", 15_000)).trim()).toBe("still-2");
    const err = await a.waitMessage("error", 20_000);
    expect(err.code).toBe("store_unavailable");
    expect((await a.closed).code).toBe(4504);
    // Not before REDIS_SHARD_LOST_MS (a failover gets its chance), soon after.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(SHARD_LOST_MS - 500);
    expect((await b.run("echo after-$((2+2))", 15_000)).trim()).toBe("after-4");
    expect(b.closeInfo).toBeNull();
    // The worker gave the shell up too: its audit row says why (PostgreSQL, not the lost shard).
    const row = await waitFor(async () => {
      const r = await sessionRow(a!.hello!.session);
      return r?.closed_at ? r : null;
    }, 20_000);
    expect(row.close_reason).toBe("store_unavailable");
    await b.close();
  }, 90_000);
});
