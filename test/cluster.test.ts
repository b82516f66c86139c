import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { processTree, startCluster, type Cluster } from "../scripts/cluster.ts";
import { ROOT } from "../scripts/processes.ts";
import { childEnv, uniqueNs } from "./helpers/env.ts";
import { call, readyWorkspace, waitFor } from "./helpers/http.ts";
import { cmdlineOf, processAlive, processesMatching } from "./helpers/procs.ts";
import { openShell, TermClient } from "./helpers/term-client.ts";

/** Sum of a Prometheus metric's samples whose labels include `labels`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const m = /^[^{ ]+(?:\{(.*)\})? ([^ ]+)$/.exec(line);
    if (!m) continue;
    const have = Object.fromEntries([...(m[1] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[2]);
  }
  return sum;
}

async function scrape(urls: string[]): Promise<string[]> {
  return Promise.all(
    urls.map(async (u) => {
      const r = await fetch(u);
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toMatch(/^text\/plain/);
      return r.text();
    }),
  );
}
const total = (texts: string[], name: string, labels?: Record<string, string>) => texts.reduce((s, t) => s + sample(t, name, labels), 0);

/** Processes whose environment names this Redis prefix (our API and worker nodes). */
function processesWithPrefix(ns: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${e}/environ`, "latin1").split("\0").includes(`MOLECULE_REDIS_PREFIX=${ns}`) && processAlive(Number(e))) out.push(Number(e));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, "latin1").trim();
  } catch {
    return "";
  }
}

describe("the cluster launcher (haproxy + 2 API + 2 workers)", () => {
  let c: Cluster;
  let ns: string;
  let ws: string;
  let stopped = false;
  beforeAll(async () => {
    ns = uniqueNs();
    // Short drain: stop() must not wait the default 10 s for the shell left open below.
    c = await startCluster({ port: 0, env: childEnv(ns, { MOLECULE_DRAIN_TIMEOUT_MS: "500" }) });
  });
  afterAll(async () => {
    if (!stopped) await c?.stop();
  });

  it("serves REST through the load balancer from both API nodes, no stickiness", async () => {
    expect(c.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(c.apis).toHaveLength(2);
    expect(c.workers).toHaveLength(2);
    expect(await c.backends()).toEqual({ "api-1": "UP", "api-2": "UP" });
    ws = await readyWorkspace(c.url, c.token, "cluster-ws");
    const served = new Map<string, number>();
    for (let i = 0; i < 8; i++) {
      const r = await call(c.url, "GET", `/workspaces/${ws}`, { token: c.token });
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ id: ws, status: "ready" });
      // The load balancer gave the request an id and the node echoed it back.
      expect(r.headers.get("x-request-id")).toMatch(/^[0-9A-F]{16,}$/);
      const node = r.headers.get("x-molecule-backend") ?? "?";
      served.set(node, (served.get(node) ?? 0) + 1);
    }
    // Metrics are for scrapers inside the network (each node directly), not through the public entry.
    const m = await call(c.url, "GET", "/metrics");
    expect(m.status).toBe(404);
    expect(m.body).toMatchObject({ error: { code: "not_found" } });
    // Round robin on one keep-alive client: both nodes answer, alternately.
    expect([...served.keys()].sort()).toEqual(["api-1", "api-2"]);
    expect(served.get("api-1")).toBe(4);
  });

  it("runs a v1 terminal through the load balancer and re-attaches to the same shell through the other node", async () => {
    const a = new TermClient(c.wsUrl, ws, { token: c.token, cols: 90, rows: 25 });
    const via = new Promise<string>((resolve) => a.ws.once("upgrade", (res) => resolve(String(res.headers["x-molecule-backend"]))));
    await a.waitMessage("hello");
    expect((await a.run("echo $MOLECULE_WS_ID")).trim()).toBe(ws);
    // An unexported variable marks this very shell ($$ alone may be the same in every sandbox's PID namespace).
    await a.run("MARK=$RANDOM$RANDOM$RANDOM");
    const mark = (await a.run("echo $MARK")).trim();
    expect(mark).toMatch(/^\d{3,}$/);
    const pid = (await a.run("echo $$")).trim();
    const first = await via;
    expect(["api-1", "api-2"]).toContain(first);
    a.drop();
    const other = c.apiUrls[first === "api-1" ? 1 : 0]!.replace(/^http/, "ws");
    const b = await openShell(other, ws, { token: c.token, session: a.hello!.session, offset: a.offset });
    expect((await b.run("echo $MARK")).trim()).toBe(mark);
    expect((await b.run("echo $$")).trim()).toBe(pid);
    b.send("exit\r");
    expect(await b.waitMessage("exit")).toMatchObject({ code: 0 });
  });

  it("serves the legacy raw-mode client (no subprotocol) through the load balancer", async () => {
    const r = new TermClient(c.wsUrl, ws, { token: c.token, mode: "raw" });
    const frames: boolean[] = [];
    r.ws.on("message", (_d, isBinary) => frames.push(isBinary));
    expect(await r.refused).toBeNull();
    expect(r.ws.protocol).toBe("");
    // Keystrokes as text frames; the shell's answer as binary frames.
    r.sendText("echo raw-$((6*7))-$MOLECULE_WS_ID\r");
    await r.waitText(`raw-42-${ws}`);
    expect(frames.length).toBeGreaterThan(0);
    expect(frames.every((b) => b)).toBe(true);
    r.sendText("exit\r");
    expect((await r.closed).code).toBe(1000);
  });

  it("exposes Prometheus metrics on every API node and worker, and the session counters move", async () => {
    // Earlier tests' shells are fully ended on their workers (the client hears of the end first).
    const idle = async () => total(await scrape(c.workerMetricsUrls), "molecule_worker_sessions_active") === 0;
    await waitFor(idle, 10_000);
    const before = { api: await scrape(c.apiUrls.map((u) => `${u}/metrics`)), wk: await scrape(c.workerMetricsUrls) };
    // Every node labels its samples with its own id.
    expect(before.api.map((t) => /node="(api-\d)"/.exec(t)?.[1])).toEqual(["api-1", "api-2"]);
    expect(before.wk.map((t) => /worker="(worker-\d)"/.exec(t)?.[1])).toEqual(["worker-1", "worker-2"]);

    // Four sessions through the load balancer: round robin spreads them over both nodes.
    const shells: TermClient[] = [];
    for (let i = 0; i < 4; i++) shells.push(await openShell(c.wsUrl, ws, { token: c.token }));
    for (const s of shells) expect((await s.run("echo hi")).trim()).toBe("hi");
    const during = { api: await scrape(c.apiUrls.map((u) => `${u}/metrics`)), wk: await scrape(c.workerMetricsUrls) };
    for (const t of during.api) expect(sample(t, "molecule_terminal_sessions_active")).toBeGreaterThanOrEqual(1);
    expect(total(during.api, "molecule_terminal_sessions_active")).toBe(4);
    expect(total(during.wk, "molecule_worker_sessions_active")).toBe(4);

    for (const s of shells) {
      s.send("exit\r");
      await s.closed;
    }
    // The worker counts a session closed once its shell is gone and the audit row written.
    await waitFor(idle, 10_000);
    const after = { api: await scrape(c.apiUrls.map((u) => `${u}/metrics`)), wk: await scrape(c.workerMetricsUrls) };
    const delta = (k: "api" | "wk", name: string, labels?: Record<string, string>) => total(after[k], name, labels) - total(before[k], name, labels);

    expect(delta("api", "molecule_terminal_sessions_opened_total", { kind: "new" })).toBe(4);
    expect(delta("api", "molecule_terminal_open_seconds_count", { kind: "new" })).toBe(4);
    expect(delta("api", "molecule_terminal_sessions_closed_total", { reason: "exit" })).toBe(4);
    expect(total(after.api, "molecule_terminal_sessions_active")).toBe(0);
    expect(delta("api", "molecule_terminal_bytes_in_total")).toBeGreaterThan(4 * "exit\r".length);
    expect(delta("api", "molecule_terminal_bytes_out_total")).toBeGreaterThan(4 * "hi".length);
    expect(delta("wk", "molecule_worker_sessions_opened_total")).toBe(4);
    expect(delta("wk", "molecule_worker_sessions_closed_total", { reason: "exit" })).toBe(4);
    expect(delta("wk", "molecule_worker_pty_bytes_out_total")).toBeGreaterThan(0);
    expect(delta("wk", "molecule_worker_pty_bytes_in_total")).toBe(delta("api", "molecule_terminal_bytes_in_total"));
    expect(delta("wk", "molecule_queue_job_wait_seconds_count", { queue: "terminal" })).toBe(4);
    // Both API nodes held some of the four sessions.
    for (let i = 0; i < 2; i++) {
      expect(sample(after.api[i]!, "molecule_terminal_sessions_opened_total") - sample(before.api[i]!, "molecule_terminal_sessions_opened_total")).toBe(2);
    }
    // Earlier tests' work: the provisioning of the workspace, and the re-attach.
    expect(total(after.wk, "molecule_provisioning_duration_seconds_count", { provider: "local", action: "create", outcome: "ready" })).toBe(1);
    expect(total(after.api, "molecule_terminal_sessions_opened_total", { kind: "reattach" })).toBe(1);
    expect(total(after.api, "molecule_terminal_sessions_closed_total", { reason: "dropped" })).toBe(1);
    expect(total(after.wk, "molecule_queue_jobs", { queue: "terminal", state: "active" })).toBe(0);
  });

  it("takes a killed API node out of rotation while every request still succeeds", async () => {
    c.apis[1]!.child.kill("SIGKILL");
    expect(await c.apis[1]!.exited).toBe(null);
    // Right after the kill (before any health check noticed): refused connections are retried on the other node.
    for (let i = 0; i < 10; i++) {
      const r = await call(c.url, "GET", `/workspaces/${ws}`, { token: c.token });
      expect(r.status).toBe(200);
      expect(r.headers.get("x-molecule-backend")).toBe("api-1");
    }
    await waitFor(async () => (await c.backends())["api-2"] === "DOWN", 10_000);
    expect((await c.backends())["api-1"]).toBe("UP");
    const s = await openShell(c.wsUrl, ws, { token: c.token });
    expect((await s.run("echo $MOLECULE_WS_ID")).trim()).toBe(ws);
    await s.close();
  });

  it("stop() ends haproxy, every node and every shell, leaving no process behind", async () => {
    // A shell left open with a background job that ignores hang-ups.
    const s = await openShell(c.wsUrl, ws, { token: c.token });
    s.send("(trap '' HUP; exec sleep 300) >/dev/null 2>&1 &\r");
    const roots = [...c.apis, ...c.workers].map((p) => p.child.pid!).concat(c.lb.pid!);
    let tree = processTree(roots);
    await waitFor(async () => [...(tree = processTree(roots)).keys()].some((pid) => comm(pid) === "sleep"), 5000);
    const names = [...tree.keys()].map(comm);
    expect(names).toContain("haproxy");
    expect(names).toContain("sleep");
    // api-1 and both workers (api-2 was killed above).
    expect(names.filter((n) => n === "node").length).toBeGreaterThanOrEqual(3);
    // The compiled mains (scripts/build.ts): dist/server/<build>/{api,worker}.js.
    const mains = processesWithPrefix(ns).filter((pid) => /dist\/server\/\w+\/(api|worker)\.js/.test(cmdlineOf(pid)));
    expect(mains.length).toBe(3);

    const t0 = performance.now();
    await c.stop();
    stopped = true;
    expect(performance.now() - t0).toBeLessThan(20_000);
    await waitFor(async () => [...tree.keys()].every((pid) => !processAlive(pid)), 5000).catch(() => {});
    const alive = [...tree.keys()].filter((pid) => processAlive(pid)).map((pid) => `${pid} ${comm(pid)}`);
    expect(alive).toEqual([]);
    expect(processesWithPrefix(ns)).toEqual([]);
    expect(processesMatching(c.dir)).toEqual([]);
    // The client saw the node go away.
    expect((await s.closed).code).not.toBe(1000);
  });
});

describe("./cluster (the CLI)", () => {
  it("prints the load balancer URL and a token, serves through it, and stops on SIGTERM leaving nothing behind", async () => {
    const state = mkdtempSync(join(tmpdir(), "molecule-state-"));
    const ns = uniqueNs();
    try {
      const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "scripts/cluster.ts"), "--apis", "2", "--workers", "1"], {
        cwd: ROOT,
        env: childEnv(ns, { MOLECULE_STATE_DIR: state, MOLECULE_SANDBOX_ROOT: join(state, "sandboxes") }),
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      child.stdout.on("data", (b) => (out += b));
      child.stderr.on("data", (b) => (out += b));
      const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
      await waitFor(async () => /Org token: mol_/.test(out) || child.exitCode !== null, 60_000, 100);
      const url = /Molecule cluster is running: (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
      const token = /Org token: (mol_[A-Za-z0-9_-]{43})/.exec(out)?.[1];
      expect(url, out).toBeDefined();
      const lists = await call(url!, "GET", "/workspaces", { token });
      expect(lists.status).toBe(200);
      const nodes = processesWithPrefix(ns).map(cmdlineOf);
      // haproxy, 2 API nodes, 1 worker (besides the launcher itself)
      expect(nodes.filter((c) => /dist\/server\/\w+\/api\.js/.test(c)).length).toBe(2);
      expect(nodes.filter((c) => /dist\/server\/\w+\/worker\.js/.test(c)).length).toBe(1);
      const cfg = /behind haproxy: (\S+haproxy\.cfg)/.exec(out)![1]!;
      expect(readFileSync(cfg, "utf8")).toMatch(/server api-2 127\.0\.0\.1:\d+ check/);
      expect(processesMatching(cfg)).toHaveLength(1);
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      expect(processesWithPrefix(ns)).toEqual([]);
      expect(processesMatching(cfg)).toEqual([]);
      // The token was kept for the next run, as ./start does.
      expect(readFileSync(join(state, "dev-token"), "utf8").trim()).toBe(token);
    } finally {
      // A failed assertion must not leave the cluster running.
      for (const pid of processesWithPrefix(ns)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone
        }
      }
      rmSync(state, { recursive: true, force: true });
    }
  });
});
