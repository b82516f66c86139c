/**
 * Asynchronous replication losing the newest output: a replica cut off from its primary (resync
 * pending) is promoted after the primary dies. The worker writes its recent output again (256 KiB); what is
 * older than that and missing from the new primary reaches a re-attaching client as a `gap`
 * message: detected, never silent, and nothing after it lost or reordered.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keySlot, sessionKeys } from "@molecule/shared";
import { readyWorkspace, waitFor } from "../helpers/http.ts";
import { openShell } from "../helpers/term-client.ts";
import { startTopology, type Topology } from "../helpers/topology.ts";
import { onNode, startRedisCluster, type RedisClusterHandle } from "./harness.ts";

let c: RedisClusterHandle;
let t: Topology;
let ws: string;
beforeAll(async () => {
  c = await startRedisCluster();
  t = await startTopology({ apis: 1, workers: 1, env: { REDIS_CLUSTER_NODES: c.seeds } });
  ws = await readyWorkspace(t.apis[0]!.url, t.token);
}, 90_000);
afterAll(async () => {
  await t?.close();
  await c?.close();
});

describe("replication loss on failover", () => {
  it("bytes the promoted replica never got and the worker can no longer re-send: a gap for the client that asks for them", async () => {
    const a = await openShell(t.apis[0]!.wsUrl, ws, { token: t.token });
    await a.run("stty -echo");
    const session = a.hello!.session;
    const slot = keySlot(sessionKeys(t.ns, session).log);
    const primary = await c.ownerOf(slot);
    const [replica] = await c.replicasOf(primary);
    if (replica === undefined) throw new Error("no replica");
    const before = a.offset;
    // The primary cuts its replica off after 16 KiB unsent and keeps only 16 KiB of backlog: the
    // replica has to resync in full, which the primary delays 5 s. 700 KB of output (inside the
    // 1 MiB replay window, beyond the worker's 256 KiB re-seed) reaches only the primary (and the
    // live client); the primary dies before the resync.
    await onNode(primary, async (r) => {
      await r.config("SET", "repl-backlog-size", "16384");
      await r.config("SET", "client-output-buffer-limit", "replica 16kb 16kb 0");
      await r.config("SET", "repl-diskless-sync-delay", "5");
    });
    await a.run("head -c 700000 /dev/zero | tr '\\0' x; echo; echo burst-$((1))-done", 30_000);
    await c.kill(primary);
    // Promoted without its primary's agreement (it is dead): what it lacks is lost.
    await waitFor(async () => {
      await onNode(replica, (r) => r.cluster("FAILOVER", "TAKEOVER")).catch(() => undefined);
      return (await c.ownerOf(slot).catch(() => 0)) === replica;
    }, 20_000, 200);
    // The worker listens for input on the new primary again before anyone types (input sent
    // before that is dropped, as keystrokes typed into a Redis outage are).
    await waitFor(async () => {
      const [, n] = (await onNode(replica, (r) => r.call("PUBSUB", "SHARDNUMSUB", sessionKeys(t.ns, session).in))) as [string, number];
      return Number(n) === 1;
    }, 20_000, 100);
    a.drop();
    await a.closed;
    // The shell is still there, on the new primary; the output since `before` is partly gone.
    const b = await openShell(t.apis[0]!.wsUrl, ws, { token: t.token, session, offset: before });
    expect((await b.run("echo after-$((7*6))", 20_000)).trim()).toBe("after-42");
    const gaps = b.messages.filter((m) => m.type === "gap") as { type: "gap"; from: number; to: number }[];
    expect(gaps.length).toBeGreaterThan(0);
    // Said where it starts and ends: past what the new primary still had, before what was re-sent.
    expect(gaps[0]!.from).toBeGreaterThanOrEqual(before);
    expect(gaps[0]!.to).toBeGreaterThan(gaps[0]!.from);
    expect(gaps[0]!.to).toBeLessThan(before + 700_000);
    // What the worker re-sent (its last 256 KiB) and everything after arrived: the burst's end is there.
    expect(b.output.includes("burst-1-done")).toBe(true);
    await b.close();
  }, 120_000);

  it("the same output with the replica in sync: a re-attach from the same offset gets every byte, no gap", async () => {
    const a = await openShell(t.apis[0]!.wsUrl, ws, { token: t.token });
    await a.run("stty -echo");
    const session = a.hello!.session;
    const before = a.offset;
    await a.run("head -c 700000 /dev/zero | tr '\\0' x; echo; echo burst-$((2))-done", 30_000);
    a.drop();
    await a.closed;
    const b = await openShell(t.apis[0]!.wsUrl, ws, { token: t.token, session, offset: before });
    expect((await b.run("echo after-$((7*6))", 20_000)).trim()).toBe("after-42");
    expect(b.messages.filter((m) => m.type === "gap")).toEqual([]);
    expect(Math.max(...(b.output.toString("latin1").match(/x+/g) ?? [""]).map((r) => r.length))).toBe(700_000);
    await b.close();
  }, 60_000);
});
