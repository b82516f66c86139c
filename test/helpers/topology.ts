import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDb } from "@molecule/shared";
import { createOrg } from "../../apps/api/src/orgs.ts";
import { API_MAIN, WORKER_MAIN, startNode, stopProc, type Proc } from "../../scripts/processes.ts";
import { childEnv, testUrls, uniqueNs } from "./env.ts";

export interface NodeHandle {
  proc: Proc;
  url: string;
  wsUrl: string;
  id: string;
}

/**
 * API and worker processes of one test, addressed directly (no load balancer), so
 * a test can open on one node, kill it, and re-attach on another.
 */
export async function startTopology(o: { apis?: number; workers?: number; env?: Record<string, string> } = {}) {
  const ns = uniqueNs();
  const sandboxRoot = mkdtempSync(join(tmpdir(), "molecule-topo-"));
  // Sessions are recorded (the default): into this test's own directory, shared by its nodes.
  const recordingDir = mkdtempSync(join(tmpdir(), "molecule-topo-rec-"));
  const env = childEnv(ns, { MOLECULE_SANDBOX_ROOT: sandboxRoot, MOLECULE_RECORDING_DIR: recordingDir, ...o.env });
  const procs: Proc[] = [];
  const logDir = process.env.TEST_LOG_DIR;
  const apis: NodeHandle[] = [];
  const workers: { proc: Proc; id: string }[] = [];

  // Counted when a node is asked for, not when it is up: nodes started at once get ids of their own.
  let apiCount = 0;
  let workerCount = 0;
  async function addApi(extra: Record<string, string> = {}): Promise<NodeHandle> {
    const id = `api-${ns}-${apiCount++}`;
    const proc = startNode(id, API_MAIN, { ...env, MOLECULE_NODE_ID: id, ...extra }, logDir && join(logDir, `${id}.log`));
    procs.push(proc);
    const port = (await proc.ready).port as number;
    const h = { proc, id, url: `http://127.0.0.1:${port}`, wsUrl: `ws://127.0.0.1:${port}` };
    apis.push(h);
    return h;
  }
  async function addWorker(extra: Record<string, string> = {}) {
    const id = `w-${ns}-${workerCount++}`;
    const proc = startNode(id, WORKER_MAIN, { ...env, MOLECULE_WORKER_ID: id, ...extra }, logDir && join(logDir, `${id}.log`));
    procs.push(proc);
    await proc.ready;
    const h = { proc, id };
    workers.push(h);
    return h;
  }
  try {
    await Promise.all([
      ...Array.from({ length: o.apis ?? 1 }, () => addApi()),
      ...Array.from({ length: o.workers ?? 1 }, () => addWorker()),
    ]);
  } catch (err) {
    // One process failed to start: stop the others before reporting it.
    await Promise.all(procs.map((p) => stopProc(p, "SIGKILL")));
    // Retried: a sandbox shell killed with its worker may still be writing (its history) as we remove it.
    rmSync(sandboxRoot, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    throw err;
  }
  const db = createDb(testUrls().databaseUrl, { max: 2 });
  const org = await createOrg(db.db, `topo-${ns}`);
  return {
    ns,
    env,
    apis,
    workers,
    db,
    token: org.token,
    sandboxRoot,
    recordingDir,
    addApi,
    addWorker,
    async close() {
      await Promise.all(procs.map((p) => stopProc(p, "SIGKILL")));
      await db.close();
      // Retried: a sandbox shell killed with its worker may still be writing (its history) as we remove it.
      rmSync(sandboxRoot, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
      rmSync(recordingDir, { recursive: true, force: true });
    },
  };
}
export type Topology = Awaited<ReturnType<typeof startTopology>>;
