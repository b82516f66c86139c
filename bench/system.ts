/**
 * The two things the benchmark drives: the system under test (the multi-node
 * cluster: haproxy, API processes, terminal-workers, Redis, PostgreSQL, local
 * provider; or one API + one worker without a load balancer) and the bare
 * bridge, each with the processes whose CPU and memory count.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDb } from "@molecule/shared";
import { createOrg } from "../apps/api/src/orgs.ts";
import { API_MAIN, ROOT, WORKER_MAIN, startNode, stopProc, type Proc as NodeProc } from "../scripts/processes.ts";
import type { Proc } from "./measure.ts";

export interface Target {
  name: "system" | "bare";
  /** ws:// URL of the terminal endpoint (a workspace of our org for the system). */
  terminalUrl: string;
  token?: string;
  /** Server processes: CPU and memory of these count (roles: api, worker, lb, redis, bridge). */
  procs: Proc[];
  describe: string;
  stop(): Promise<void>;
}

export interface SystemOptions {
  env: NodeJS.ProcessEnv;
  /** "cluster": haproxy + N APIs + M workers (scripts/cluster.ts); "node": one API and one worker, no load balancer. */
  kind: "cluster" | "node";
  apis?: number;
  workers?: number;
  /** The Redis server's pid, or every node's of a Redis Cluster (their CPU is summed as "redis"). */
  redisPid: number | number[];
  logDir: string;
}

async function json(url: string, init: RequestInit = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body };
}

/** Creates a workspace through the REST API and waits until it is ready. */
export async function readyWorkspace(url: string, token: string): Promise<string> {
  const c = await json(`${url}/workspaces`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "bench", runtime: "hermes", tier: 2 }),
  });
  if (c.status !== 201) throw new Error(`workspace create failed: ${c.status} ${JSON.stringify(c.body)}`);
  const id = String(c.body.id);
  const deadline = performance.now() + 30_000;
  for (;;) {
    const g = await json(`${url}/workspaces/${id}`, { headers: { authorization: `Bearer ${token}` } });
    if (g.body?.status === "ready") return id;
    if (g.body?.status === "failed") throw new Error(`workspace failed: ${JSON.stringify(g.body)}`);
    if (performance.now() > deadline) throw new Error(`workspace not ready after 30 s: ${JSON.stringify(g.body)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startSystem(o: SystemOptions): Promise<Target> {
  const redisProcs: Proc[] = [o.redisPid].flat().map((pid) => ({ role: "redis", pid }));
  if (o.kind === "cluster") {
    const { startCluster } = await import("../scripts/cluster.ts");
    const c = await startCluster({ port: 0, env: o.env, apis: o.apis ?? 2, workers: o.workers ?? 2, logDir: o.logDir });
    try {
      const ws = await readyWorkspace(c.url, c.token);
      const procs: Proc[] = [
        ...c.apis.map((p) => ({ role: "api", pid: p.child.pid! })),
        ...c.workers.map((p) => ({ role: "worker", pid: p.child.pid! })),
        { role: "lb", pid: c.lb.pid! },
        ...redisProcs,
      ];
      return {
        name: "system",
        terminalUrl: `${c.wsUrl}/workspaces/${ws}/terminal`,
        token: c.token,
        procs,
        describe: `haproxy + ${c.apis.length} API + ${c.workers.length} worker processes, Redis, PostgreSQL, local provider`,
        stop: () => c.stop(),
      };
    } catch (err) {
      await c.stop();
      throw err;
    }
  }
  // One API and one worker, directly (no load balancer).
  const { migrateDatabase } = await import("@molecule/shared");
  const env = o.env;
  await migrateDatabase(env.DATABASE_URL!);
  const h = createDb(env.DATABASE_URL!, { max: 1 });
  const { token } = await createOrg(h.db, `bench-${env.MOLECULE_REDIS_PREFIX}-${Date.now()}`).finally(() => h.close());
  const sandboxes = mkdtempSync(join(tmpdir(), "molecule-bench-sbx-"));
  const shared = { ...env, MOLECULE_SANDBOX_ROOT: env.MOLECULE_SANDBOX_ROOT ?? sandboxes, PORT: "0", HOST: "127.0.0.1" };
  const procs: NodeProc[] = [];
  const stop = async () => {
    await Promise.all(procs.map((p) => stopProc(p)));
    rmSync(sandboxes, { recursive: true, force: true });
  };
  try {
    const worker = startNode("worker", WORKER_MAIN, { ...shared, MOLECULE_WORKER_ID: "bench-worker-1" }, join(o.logDir, "worker.log"));
    procs.push(worker);
    const api = startNode("api", API_MAIN, { ...shared, MOLECULE_NODE_ID: "bench-api-1" }, join(o.logDir, "api.log"));
    procs.push(api);
    const [ready] = await Promise.all([api.ready, worker.ready]);
    const url = `http://127.0.0.1:${String(ready.port)}`;
    const ws = await readyWorkspace(url, token);
    return {
      name: "system",
      terminalUrl: `${url.replace(/^http/, "ws")}/workspaces/${ws}/terminal`,
      token,
      procs: [
        { role: "api", pid: api.child.pid! },
        { role: "worker", pid: worker.child.pid! },
        ...redisProcs,
      ],
      describe: "1 API + 1 worker process (no load balancer), Redis, PostgreSQL, local provider",
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * The bare bridge behind the system's own haproxy configuration: how much of
 * the system's figures the load balancer alone accounts for.
 */
export async function startBareBehindLb(bare: Target, logDir: string): Promise<Target> {
  const { startLoadBalancer } = await import("../scripts/cluster.ts");
  const dir = mkdtempSync(join(tmpdir(), "molecule-bench-lb-"));
  let child: import("node:child_process").ChildProcess | null = null;
  const stop = async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const c = child;
      await new Promise((r) => (c.once("exit", r), c.kill("SIGTERM")));
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const barePort = Number(new URL(bare.terminalUrl).port);
    const lb = await startLoadBalancer({ port: 0, servers: [{ name: "bare", port: barePort }], dir, logDir, onSpawn: (c) => (child = c) });
    return {
      name: "bare",
      terminalUrl: bare.terminalUrl.replace(`:${barePort}/`, `:${lb.port}/`),
      procs: [...bare.procs, { role: "lb", pid: lb.child.pid! }],
      describe: "the bare bridge behind the same haproxy configuration as the system",
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

export async function startBare(env: NodeJS.ProcessEnv, logDir: string): Promise<Target> {
  const p = startNode("bare-bridge", join(ROOT, "bench/bare-bridge.ts"), env, join(logDir, "bare-bridge.log"));
  const ready = await p.ready;
  return {
    name: "bare",
    terminalUrl: `ws://127.0.0.1:${String(ready.port)}/workspaces/bench/terminal`,
    procs: [{ role: "bridge", pid: p.child.pid! }],
    describe: "bench/bare-bridge.ts: ws + node-pty in one process, same shell command, same v1 framing and window",
    stop: () => stopProc(p),
  };
}
