import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TERMINAL_QUEUE, bullPrefix, sessionKeys } from "@molecule/shared";
import { testUrls } from "./helpers/env.ts";
import { call, readyWorkspace, waitFor } from "./helpers/http.ts";
import { nextLog } from "./helpers/proc-log.ts";
import { processesMatching } from "./helpers/procs.ts";
import { openShell, TermClient } from "./helpers/term-client.ts";
import { startTopology, type Topology } from "./helpers/topology.ts";

let t: Topology;
let ws: string;
let redis: Redis;
let terminalQueue: Queue;
beforeAll(async () => {
  // The first test waits for a warning of the API's watchdog: warn lines must reach its stdout.
  const logLevel = ["trace", "debug", "info"].includes(process.env.TEST_LOG_LEVEL ?? "") ? process.env.TEST_LOG_LEVEL! : "warn";
  t = await startTopology({ apis: 1, workers: 1, env: { MOLECULE_CLAIM_TIMEOUT_MS: "3000", MOLECULE_DRAIN_TIMEOUT_MS: "1000", LOG_LEVEL: logLevel } });
  ws = await readyWorkspace(t.apis[0]!.url, t.token);
  redis = new Redis(testUrls().redisUrl);
  terminalQueue = new Queue(TERMINAL_QUEUE, { connection: redis, prefix: bullPrefix(t.ns) });
});
afterAll(async () => {
  await terminalQueue?.close();
  redis?.disconnect();
  await t?.close();
});

const api = () => t.apis[0]!;
const sessionRow = async (id: string) => (await call(api().url, "GET", `/workspaces/${ws}/terminal/sessions`, { token: t.token })).body.sessions.find((s: { id: string }) => s.id === id);

describe("terminal-worker failures", () => {
  it("a worker frozen past its heartbeat TTL (SIGSTOP) is not given up while its connections are open: the same shell answers after SIGCONT", async () => {
    const w = t.workers[0]!;
    const c = await openShell(api().wsUrl, ws, { token: t.token });
    const pid = (await c.run("echo $$")).trim();
    // Registered before the freeze: the watchdog's decision, logged once per stall.
    const judged = nextLog(api().proc, (l) => l.worker_id === w.id && /heartbeat late, but its connections are open/.test(String(l.msg)), 15_000);
    w.proc.child.kill("SIGSTOP");
    try {
      // Heartbeat TTL 3 s + the API's 1 s threshold: this is where a dead worker is given up.
      await judged;
      expect(c.closeInfo).toBeNull();
      expect(c.messages.filter((m) => m.type === "error")).toEqual([]);
    } finally {
      w.proc.child.kill("SIGCONT");
    }
    expect((await c.run("echo $$", 15_000)).trim()).toBe(pid);
    expect(c.closeInfo).toBeNull();
    await c.close();
  });

  it("SIGKILL the worker: worker_lost (4500) within 5 s, the audit row closed, no process left", async () => {
    const w = t.workers[0]!;
    const c = await openShell(api().wsUrl, ws, { token: t.token });
    // A duration no other test uses, so only this shell's child matches.
    const sleeper = `sleep ${1000 + Math.floor(Math.random() * 8000)}.5`;
    await c.run(`${sleeper} && echo done & true`);
    await waitFor(async () => processesMatching(sleeper).length > 0, 5000);
    const t0 = performance.now();
    w.proc.child.kill("SIGKILL");
    const err = await c.waitMessage("error", 8000);
    expect(err.code).toBe("worker_lost");
    expect((await c.closed).code).toBe(4500);
    expect(performance.now() - t0).toBeLessThan(5000);
    const row = await waitFor(async () => {
      const r = await sessionRow(c.hello!.session);
      return r?.closed_at ? r : null;
    });
    expect(row.close_reason).toBe("worker_lost");
    await waitFor(async () => processesMatching(sleeper).length === 0, 5000);
    await t.addWorker();
  });

  it("a worker that dies while nobody watches its session still gets the audit row closed (sweeper)", async () => {
    const w = t.workers.at(-1)!;
    const c = await openShell(api().wsUrl, ws, { token: t.token });
    await c.run("true");
    await waitFor(async () => (await sessionRow(c.hello!.session))?.worker_id === w.id);
    c.drop();
    // The API has let go of the session (it clears the viewer key on detach): nobody holds the socket.
    await waitFor(async () => (await redis.exists(sessionKeys(t.ns, c.hello!.session).viewer)) === 0, 5000, 20);
    w.proc.child.kill("SIGKILL");
    await w.proc.exited;
    // No API node holds the socket now: the periodic sweeper (every 10 s) closes the row.
    const row = await waitFor(async () => {
      const r = await sessionRow(c.hello!.session);
      return r?.closed_at ? r : null;
    }, 25_000, 500);
    expect(row.close_reason).toBe("worker_lost");
    await t.addWorker();
  });

  it("SIGTERM the worker: it stops claiming and ends its sessions with a clear reason", async () => {
    const w = t.workers.at(-1)!;
    const c = await openShell(api().wsUrl, ws, { token: t.token });
    await c.run("true");
    w.proc.child.kill("SIGTERM");
    const err = await c.waitMessage("error", 15_000);
    expect(err.code).toBe("worker_lost");
    expect(err.message).toMatch(/shutting down/);
    expect((await c.closed).code).toBe(4500);
    expect(await w.proc.exited).toBe(0);
    const row = await sessionRow(c.hello!.session);
    expect(row.close_reason).toBe("worker_shutdown");
  });

  it("a client that leaves before any worker claims its session never gets a shell", async () => {
    // No worker runs now: the session's job waits in the queue.
    const c = new TermClient(api().wsUrl, ws, { token: t.token });
    await c.opened;
    // Its job is queued (the audit row is written just before): the client leaves a waiting job behind.
    // Session jobs only: an earlier test's lost sessions may have left hang-up jobs waiting too.
    await waitFor(async () => (await terminalQueue.getWaiting()).some((j) => j.name === "session"), 5000, 20);
    await c.close(1000);
    await t.addWorker();
    // A worker is claiming again: a new session works...
    const d = await openShell(api().wsUrl, ws, { token: t.token });
    expect((await d.run("echo alive")).trim()).toBe("alive");
    // ...and the abandoned one was closed without ever reaching a worker.
    const all = (await call(api().url, "GET", `/workspaces/${ws}/terminal/sessions`, { token: t.token })).body.sessions;
    const open = all.filter((r: { closed_at: string | null }) => !r.closed_at);
    expect(open.map((r: { id: string }) => r.id)).toEqual([d.hello!.session]);
    const abandoned = all.filter((r: { close_reason: string; worker_id: string | null }) => r.close_reason === "client_closed" && r.worker_id === null);
    expect(abandoned.length).toBe(1);
    // Its id would be in the shell's command line (bwrap --setenv MOLECULE_SESSION_ID ...).
    expect(processesMatching(abandoned[0].id)).toEqual([]);
    await d.close();
  });
});
