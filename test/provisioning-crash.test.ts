import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API_MAIN, WORKER_MAIN, startNode, stopProc, type Proc } from "../scripts/processes.ts";
import { childEnv, testUrls, uniqueNs } from "./helpers/env.ts";
import { call, waitFor } from "./helpers/http.ts";
import { createDb } from "@molecule/shared";
import { createOrg } from "../apps/api/src/orgs.ts";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const procs: Proc[] = [];
afterAll(async () => {
  await Promise.all(procs.map((p) => stopProc(p, "SIGKILL")));
});

describe("a worker killed (SIGKILL) during provisioning", () => {
  let url: string;
  let token: string;
  let env: NodeJS.ProcessEnv;
  let root: string;
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "molecule-crash-"));
    env = childEnv(uniqueNs(), {
      MOLECULE_SANDBOX_ROOT: root,
      MOLECULE_LOCAL_PROVISION_DELAY_MS: "4000",
      MOLECULE_PROVISION_LOCK_MS: "2000",
    });
    const api = startNode("api", API_MAIN, env);
    procs.push(api);
    url = `http://127.0.0.1:${(await api.ready).port}`;
    const db = createDb(testUrls().databaseUrl, { max: 1 });
    token = (await createOrg(db.db, "crash")).token;
    await db.close();
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("still ends ready once a worker runs again, never stuck", async () => {
    const w1 = startNode("worker-1", WORKER_MAIN, { ...env, MOLECULE_WORKER_ID: "crash-w1" });
    procs.push(w1);
    await w1.ready;
    const id = (await call(url, "POST", "/workspaces", { token, body: { name: "crashy" } })).body.id as string;
    // The worker has started creating the sandbox (it sleeps inside the provider now).
    await waitFor(async () => existsSync(join(root, id)), 5000, 20);
    w1.child.kill("SIGKILL");
    await w1.exited;
    expect((await call(url, "GET", `/workspaces/${id}`)).body.status).toBe("provisioning");

    const w2 = startNode("worker-2", WORKER_MAIN, { ...env, MOLECULE_WORKER_ID: "crash-w2", MOLECULE_LOCAL_PROVISION_DELAY_MS: "0" });
    procs.push(w2);
    await w2.ready;
    const final = await waitFor(async () => {
      const st = (await call(url, "GET", `/workspaces/${id}`, { token })).body;
      return st.status === "ready" || st.status === "failed" ? st : null;
    }, 20_000, 100);
    expect(final.status).toBe("ready");
    expect(existsSync(join(root, id, ".molecule-workspace"))).toBe(true);
    await stopProc(w2);
  });
});
