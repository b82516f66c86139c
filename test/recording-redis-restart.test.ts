import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, readyWorkspace, waitFor } from "./helpers/http.ts";
import { nextLog } from "./helpers/proc-log.ts";
import { openShell } from "./helpers/term-client.ts";
import { startTopology, type Topology } from "./helpers/topology.ts";
import { portOpen, startRedisServer } from "./helpers/redis-server.ts";
import { freePort } from "../scripts/cluster.ts";

/** A Redis of this test's own, without persistence: a restart comes back empty. */
let redis: ChildProcess;
let port: number;
let t: Topology;
let ws: string;
beforeAll(async () => {
  port = await freePort();
  redis = startRedisServer(port);
  await waitFor(() => portOpen(port), 5000);
  const logLevel = ["trace", "debug", "info"].includes(process.env.TEST_LOG_LEVEL ?? "") ? process.env.TEST_LOG_LEVEL! : "warn";
  // Real processes: two API nodes, one worker, the filesystem store in the topology's directory.
  t = await startTopology({ apis: 2, workers: 1, env: { REDIS_URL: `redis://127.0.0.1:${port}`, LOG_LEVEL: logLevel } });
  ws = await readyWorkspace(t.apis[0]!.url, t.token);
});
afterAll(async () => {
  await t?.close();
  redis?.kill("SIGKILL");
});

describe("recording across a Redis restart and an API node change (real processes)", () => {
  it("every line is in the recording once and in order, and it is served by either node", async () => {
    const c = await openShell(t.apis[0]!.wsUrl, ws, { token: t.token });
    const sid = c.hello!.session;
    c.send("stty -echo; for i in $(seq 1 300); do echo line $i; sleep 0.01; done; echo counter-$((1))-done; stty echo\r");
    await c.waitText(/^line 40\r$/m);
    const lost = nextLog(t.workers[0]!.proc, (l) => /redis writer: connection lost/.test(String(l.msg)), 10_000);
    redis.kill("SIGKILL");
    await new Promise((r) => redis.once("exit", r));
    await lost;
    redis = startRedisServer(port);
    await c.waitText("counter-1-done", 30_000);
    // Then over to the other API node, and out.
    c.drop();
    const b = await openShell(t.apis[1]!.wsUrl, ws, { token: t.token, session: sid, offset: c.offset });
    await b.run("echo on-node-b");
    b.send("exit\r");
    await b.closed;
    const rec = await waitFor(async () => {
      const r = await call(t.apis[1]!.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token: t.token });
      const me = r.body.sessions.find((x: { id: string }) => x.id === sid);
      return me?.recording?.complete ? me.recording : null;
    }, 20_000);
    expect(rec.bytes).toBeGreaterThan(300 * 8);
    const bodies: string[] = [];
    for (const api of t.apis) {
      const r = await call(api.url, "GET", `/workspaces/${ws}/terminal/sessions/${sid}/recording`, { token: t.token });
      expect(r.status).toBe(200);
      bodies.push(r.body as string);
      const events = (r.body as string)
        .split("\n")
        .filter(Boolean)
        .slice(1)
        .map((l) => JSON.parse(l) as [number, string, string]);
      const out = events.filter((e) => e[1] === "o").map((e) => e[2]).join("");
      const nums = [...out.matchAll(/^line (\d+)\r$/gm)].map((m) => Number(m[1]));
      expect(nums).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
      expect(out).toContain("on-node-b");
      const times = events.map((e) => e[0]);
      expect([...times].sort((x, y) => x - y)).toEqual(times);
    }
    expect(bodies[1]).toBe(bodies[0]);
  });
});
