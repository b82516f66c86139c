import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createDb, dropDatabase, hashToken } from "@molecule/shared";
import { ROOT } from "../scripts/processes.ts";
import { testUrls, uniqueNs } from "./helpers/env.ts";
import { call, waitFor } from "./helpers/http.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

function run(script: string, env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, script)], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (b) => (out += b));
  child.stderr.on("data", (b) => (out += b));
  const exited = new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
  return { child, exited, output: () => out };
}

describe("the start command", () => {
  it("creates the database, starts API + worker on local defaults and prints the URL and a working token", async () => {
    const db = new URL(testUrls().databaseUrl);
    db.pathname = `/molecule_test_start_${Date.now().toString(36)}`;
    const state = mkdtempSync(join(tmpdir(), "molecule-state-"));
    const sandboxes = mkdtempSync(join(tmpdir(), "molecule-sbx-"));
    cleanups.push(() => rmSync(state, { recursive: true, force: true }));
    cleanups.push(() => rmSync(sandboxes, { recursive: true, force: true }));
    cleanups.push(() => dropDatabase(db.toString()).catch(() => {}));
    const p = run("scripts/start.ts", {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      DATABASE_URL: db.toString(),
      REDIS_URL: testUrls().redisUrl,
      MOLECULE_REDIS_PREFIX: uniqueNs(),
      MOLECULE_STATE_DIR: state,
      MOLECULE_SANDBOX_ROOT: sandboxes,
      PORT: "0",
    });
    cleanups.push(async () => {
      p.child.kill("SIGTERM");
      await p.exited;
    });
    await waitFor(async () => /Org token: mol_/.test(p.output()), 60_000, 100);
    const url = /Molecule is running: (http:\/\/127\.0\.0\.1:\d+)/.exec(p.output())![1]!;
    const token = /Org token: (mol_[A-Za-z0-9_-]{43})/.exec(p.output())![1]!;
    const ws = await call(url, "POST", "/workspaces", { token, body: { name: "prod-agent", runtime: "hermes", tier: 2 } });
    expect(ws.status).toBe(201);
    await waitFor(async () => (await call(url, "GET", `/workspaces/${ws.body.id}`)).body.status === "ready", 10_000);
    p.child.kill("SIGTERM");
    expect(await p.exited).toBe(0);
  });

  it("says within seconds that Redis is unreachable and how to start it", async () => {
    const t0 = performance.now();
    const p = run("scripts/start.ts", {
      PATH: process.env.PATH,
      DATABASE_URL: testUrls().databaseUrl,
      REDIS_URL: "redis://127.0.0.1:1",
      MOLECULE_STATE_DIR: tmpdir(),
    });
    expect(await p.exited).toBe(2);
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(p.output()).toMatch(/Redis is not reachable at 127\.0\.0\.1:1/);
    expect(p.output()).toMatch(/docker compose up -d redis/);
  });
});

describe("the admin CLI", () => {
  it("creates an org and prints a token that works", async () => {
    const c = spawn(process.execPath, ["--import", "tsx", join(ROOT, "scripts/molecule.ts"), "org", "create", "cli-org"], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, DATABASE_URL: testUrls().databaseUrl },
    });
    let out = "";
    c.stdout.on("data", (b) => (out += b));
    expect(await new Promise((r) => c.on("exit", r))).toBe(0);
    const token = /token \(shown once\): (mol_[A-Za-z0-9_-]{43})/.exec(out)?.[1];
    expect(token).toBeDefined();
    const db = createDb(testUrls().databaseUrl, { max: 1 });
    try {
      const rows = await db.sql`select o.name from api_tokens t join orgs o on o.id = t.org_id where t.hash = ${hashToken(token!)} and t.revoked_at is null`;
      expect(rows.map((r) => r.name)).toEqual(["cli-org"]);
    } finally {
      await db.close();
    }
  });
});
