/**
 * The real API and worker processes configured for the controlplane backend by
 * environment (MOLECULE_ORG_ID + AWS settings), against the fake EC2. A worker is
 * SIGKILLed after AWS created the instance but before the answer reached it, so the
 * instance id was never stored: the next worker must find the instance by its tags
 * and either adopt it (the create goes on) or terminate it (the workspace was deleted).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDb } from "@molecule/shared";
import { createOrg } from "../../apps/api/src/orgs.ts";
import { API_MAIN, WORKER_MAIN, startNode, stopProc, type Proc } from "../../scripts/processes.ts";
import { childEnv, testUrls, uniqueNs } from "../helpers/env.ts";
import { call, waitFor } from "../helpers/http.ts";
import type { FakeInstance } from "./fake-cloud.ts";
import { startAwsHarness, type AwsHarness } from "./harness.ts";

let h: AwsHarness;
let env: NodeJS.ProcessEnv;
let url: string;
let token: string;
const procs: Proc[] = [];

beforeAll(async () => {
  h = await startAwsHarness({ sshd: false });
  env = childEnv(uniqueNs(), { ...h.env(), MOLECULE_PROVISION_LOCK_MS: "2000" });
  const api = startNode("api", API_MAIN, env, join(h.dir, "api.log"));
  procs.push(api);
  url = `http://127.0.0.1:${(await api.ready).port}`;
  const db = createDb(testUrls().databaseUrl, { max: 1 });
  token = (await createOrg(db.db, `crash-aws-${Date.now()}`)).token;
  await db.close();
}, 60_000);
afterAll(async () => {
  await Promise.all(procs.map((p) => stopProc(p, "SIGKILL")));
  await h?.close();
});

function worker(name: string, extra: Record<string, string> = {}): Proc {
  const p = startNode(name, WORKER_MAIN, { ...env, MOLECULE_WORKER_ID: name, LOG_LEVEL: "info", ...extra }, join(h.dir, `${name}.log`));
  procs.push(p);
  return p;
}
const get = async (id: string) => (await call(url, "GET", `/workspaces/${id}`, { token })).body;
const instancesOf = (id: string): FakeInstance[] => [...h.cloud.instances.values()].filter((i) => i.tags.MoleculeWorkspaceId === id);
const runsFor = (id: string) => h.cloud.callsOf("RunInstances").filter((c) => Buffer.from(String(c.params.UserData ?? ""), "base64").toString().includes(id));

/** Creates a workspace whose worker dies between RunInstances and its answer. */
async function createAndCrash(name: string): Promise<{ id: string; inst: FakeInstance }> {
  const w = worker(name);
  await w.ready;
  h.cloud.beforeRunInstancesResponse = () => {
    h.cloud.beforeRunInstancesResponse = null;
    w.child.kill("SIGKILL");
  };
  const r = await call(url, "POST", "/workspaces", { token, body: { name, runtime: "hermes", tier: 1 } });
  expect(r.status).toBe(201);
  expect(r.body.provider).toBe("aws"); // stamped by the API from MOLECULE_ORG_ID + AWS settings
  const id = r.body.id as string;
  await w.exited;
  const ws = await get(id);
  expect(ws).toMatchObject({ status: "provisioning", instance_id: null });
  const [inst, ...more] = instancesOf(id);
  expect(more).toEqual([]);
  expect(inst!.tags).toMatchObject({ Role: "workspace", MoleculeWorkspaceId: id, MoleculeRequest: `${id}-create` });
  return { id, inst: inst! };
}

describe("a worker killed right after RunInstances", () => {
  it("the next worker adopts the instance it finds by tag: one instance, ready", async () => {
    const { id, inst } = await createAndCrash("crash-adopt");
    const w2 = worker("crash-adopt-2");
    await w2.ready;
    try {
      const ws = await waitFor(async () => {
        const w = await get(id);
        return w.status === "ready" || w.status === "failed" ? w : null;
      }, 30_000, 100);
      expect(ws).toMatchObject({ status: "ready", instance_id: inst.id, error: null });
      expect(runsFor(id)).toHaveLength(1);
      expect(instancesOf(id).map((i) => i.state)).toEqual(["running"]);
      expect(readFileSync(join(h.dir, "crash-adopt-2.log"), "utf8")).toContain("adopting the instance this request launched before");
    } finally {
      await stopProc(w2);
    }
  });

  it("deleted meanwhile: the next worker terminates the instance it finds by tag", async () => {
    const { id, inst } = await createAndCrash("crash-delete");
    const del = await call(url, "DELETE", `/workspaces/${id}`, { token });
    expect(del.status).toBe(202);
    const w2 = worker("crash-delete-2");
    await w2.ready;
    try {
      await waitFor(async () => (await get(id)).status === "removed", 30_000, 100);
      await waitFor(async () => inst.state === "shutting-down" || inst.state === "terminated", 10_000, 50);
      // The stalled create is retried too, sees the delete and launches nothing.
      await waitFor(async () => readFileSync(join(h.dir, "crash-delete-2.log"), "utf8").includes("nothing to do: workspace is no longer provisioning"), 15_000, 100);
      expect(runsFor(id)).toHaveLength(1);
      expect(instancesOf(id).filter((i) => i.state === "pending" || i.state === "running")).toEqual([]);
    } finally {
      await stopProc(w2);
    }
  });
});

describe("worker configuration", () => {
  it("a half-configured controlplane backend stops the worker at startup, naming what is missing", async () => {
    const { MOLECULE_AWS_SUBNET_ID: _omit, ...partial } = env;
    const w = startNode("half-configured", WORKER_MAIN, { ...partial, MOLECULE_WORKER_ID: "half" }, join(h.dir, "half.log"));
    procs.push(w);
    expect(await w.exited).not.toBe(0);
    expect(readFileSync(join(h.dir, "half.log"), "utf8")).toMatch(/aws provider \(controlplane backend\) also needs MOLECULE_AWS_SUBNET_ID/);
  });
});
