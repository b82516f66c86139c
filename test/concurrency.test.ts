import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SPARE_DEPTH } from "../apps/terminal-worker/src/terminal/spare-shells.ts";
import { readyWorkspace, waitFor } from "./helpers/http.ts";
import { fdsExceptDbPool, openFds, processesMatching } from "./helpers/procs.ts";
import { openShell, type TermClient } from "./helpers/term-client.ts";
import { startTopology, type Topology } from "./helpers/topology.ts";

let t: Topology;
let ws: string;
beforeAll(async () => {
  // 200 shells in one workspace: its process and memory limits are raised to hold them (3 processes, ~4 MiB each).
  t = await startTopology({
    apis: 1,
    workers: 1,
    env: { MOLECULE_WORKER_CAPACITY: "250", MOLECULE_CLAIM_TIMEOUT_MS: "60000", MOLECULE_SANDBOX_PIDS: "2048", MOLECULE_SANDBOX_MEMORY: "8g" },
  });
  ws = await readyWorkspace(t.apis[0]!.url, t.token);
});
afterAll(() => t?.close());

const ptys = (pid: number) => openFds(pid).filter((f) => f === "/dev/ptmx").length;
/** What the worker keeps for the workspace between sessions: its spare shells (spare-shells.ts), each a PTY. */
const SPARES = SPARE_DEPTH;

describe("many sessions on one worker", () => {
  it("200 concurrent sessions open, echo and close cleanly, leaving no process, PTY or descriptor behind but the workspace's spares", async () => {
    const workerPid = t.workers[0]!.proc.child.pid!;
    const apiPid = t.apis[0]!.proc.child.pid!;
    // Warm up one session so lazily opened connections are in the baseline.
    const warm = await openShell(t.apis[0]!.wsUrl, ws, { token: t.token });
    await warm.run("true");
    await warm.close();
    await waitFor(async () => ptys(workerPid) === SPARES, 5000);
    const baseWorker = fdsExceptDbPool(workerPid).length;
    const baseApi = fdsExceptDbPool(apiPid).length;

    const clients: TermClient[] = await Promise.all(
      // Opening 200 shells at once takes 20 s and more on a busy 2-core machine (namespace set-up, bash start):
      // this test is about what is left behind, not speed (that is bench/), so the deadlines are wide.
      Array.from({ length: 200 }, () => openShell(t.apis[0]!.wsUrl, ws, { token: t.token, helloMs: 70_000 })),
    );
    expect(new Set(clients.map((c) => c.hello!.session)).size).toBe(200);
    const ended = () => JSON.stringify(clients.filter((c) => c.closeInfo || c.messages.some((m) => m.type !== "hello")).slice(0, 5).map((c) => ({ close: c.closeInfo, messages: c.messages, tail: c.text().slice(-200) })));
    await waitFor(async () => ptys(workerPid) === 200 + SPARES, 5000).catch(() => {});
    expect(ptys(workerPid), ended()).toBe(200 + SPARES);
    const answers = await Promise.all(clients.map((c, i) => c.run(`echo session-$((${i}+1000))`, 30_000)));
    answers.forEach((a, i) => expect(a.trim()).toBe(`session-${i + 1000}`));
    const sessions = clients.map((c) => c.hello!.session);
    await Promise.all(clients.map((c) => c.close()));

    const state = () =>
      JSON.stringify({ ptys: ptys(workerPid), procs: sessions.filter((s) => processesMatching(s).length).length, workerFds: [baseWorker, fdsExceptDbPool(workerPid).length], apiFds: [baseApi, fdsExceptDbPool(apiPid).length] });
    await waitFor(async () => ptys(workerPid) === SPARES, 15_000, 100).catch((e) => Promise.reject(new Error(`${e.message}: ${state()}`)));
    await waitFor(async () => sessions.every((s) => processesMatching(s).length === 0), 15_000, 200).catch((e) => Promise.reject(new Error(`${e.message}: ${state()}`)));
    await waitFor(async () => fdsExceptDbPool(workerPid).length <= baseWorker && fdsExceptDbPool(apiPid).length <= baseApi, 15_000, 200).catch((e) =>
      Promise.reject(new Error(`${e.message}: ${state()} ${JSON.stringify(fdsExceptDbPool(workerPid))}`)),
    );
  }, 240_000);
});
