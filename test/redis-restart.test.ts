import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readyWorkspace, waitFor } from "./helpers/http.ts";
import { nextLog } from "./helpers/proc-log.ts";
import { openShell } from "./helpers/term-client.ts";
import { startTopology, type Topology } from "./helpers/topology.ts";
import { portOpen, startRedisServer } from "./helpers/redis-server.ts";
import { freePort } from "../scripts/cluster.ts";


/** A Redis of this test's own, without persistence, as on the machines we run on. */
let redis: ChildProcess;
let port: number;
let t: Topology;
let ws: string;
beforeAll(async () => {
  port = await freePort();
  redis = startRedisServer(port);
  await waitFor(() => portOpen(port), 5000);
  // The test waits for the worker's warning that Redis is gone: warn lines must reach its stdout.
  const logLevel = ["trace", "debug", "info"].includes(process.env.TEST_LOG_LEVEL ?? "") ? process.env.TEST_LOG_LEVEL! : "warn";
  t = await startTopology({ apis: 1, workers: 1, env: { REDIS_URL: `redis://127.0.0.1:${port}`, LOG_LEVEL: logLevel } });
  ws = await readyWorkspace(t.apis[0]!.url, t.token);
});
afterAll(async () => {
  await t?.close();
  redis?.kill("SIGKILL");
});

describe("Redis restarted mid-session", () => {
  it("the session continues and no output byte is lost", async () => {
    const c = await openShell(t.apis[0]!.wsUrl, ws, { token: t.token });
    const pid = (await c.run("echo $$")).trim();
    const from = c.text().length;
    c.send("stty -echo; for i in $(seq 1 400); do echo line $i; sleep 0.01; done; echo counter-$((1))-done; stty echo\r");
    await c.waitText(/^line 50\r$/m);
    // Redis comes back only once the worker's output connection has seen it go.
    const lost = nextLog(t.workers[0]!.proc, (l) => /redis writer: connection lost/.test(String(l.msg)), 10_000);
    redis.kill("SIGKILL");
    await new Promise((r) => redis.once("exit", r));
    await lost;
    redis = startRedisServer(port);
    await c.waitText("counter-1-done", 30_000);
    const nums = [...c.text().slice(from).matchAll(/^line (\d+)\r$/gm)].map((m) => Number(m[1]));
    expect(nums).toEqual(Array.from({ length: 400 }, (_, i) => i + 1));
    expect(c.messages.filter((m) => m.type === "gap" || m.type === "error")).toEqual([]);
    // Input still reaches the same shell.
    expect((await c.run("echo $$")).trim()).toBe(pid);
    await c.close();
  });

  it("keystrokes typed while Redis is down reach the shell once it is back, each once", async () => {
    const c = await openShell(t.apis[0]!.wsUrl, ws, { token: t.token });
    const pid = (await c.run("echo $$")).trim();
    for (let round = 1; round <= 3; round++) {
      const from = c.text().length;
      // Both sides have seen Redis go: the API's input writer queues, the worker's subscriber retries.
      const apiLost = nextLog(t.apis[0]!.proc, (l) => /redis writer: connection lost/.test(String(l.msg)), 10_000);
      const workerLost = nextLog(t.workers[0]!.proc, (l) => /redis writer: connection lost/.test(String(l.msg)), 10_000);
      redis.kill("SIGKILL");
      await new Promise((r) => redis.once("exit", r));
      await Promise.all([apiLost, workerLost]);
      // Within the writer's queue limit (3 s): typed into the outage, sent once Redis is back.
      c.send(`echo typed-$((${round} * 1000 + 7))\r`);
      redis = startRedisServer(port);
      await c.waitText(new RegExp(`^typed-${round}007\\r$`, "m"), 20_000);
      // Once, not repeated by the writer's retries.
      expect((await c.run("echo $$")).trim()).toBe(pid);
      expect(c.text().slice(from).match(new RegExp(`^typed-${round}007\\r$`, "gm"))).toHaveLength(1);
    }
    expect(c.messages.filter((m) => m.type === "error")).toEqual([]);
    await c.close();
  });
});
