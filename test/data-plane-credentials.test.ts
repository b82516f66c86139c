import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { Redis } from "ioredis";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDb, createRedisWriter, verifyDatabase, verifyRedis } from "@molecule/shared";
import { ROOT } from "../scripts/processes.ts";
import { testUrls, uniqueNs } from "./helpers/env.ts";
import { readyWorkspace, waitFor } from "./helpers/http.ts";
import { startStack } from "./helpers/stack.ts";
import { openShell } from "./helpers/term-client.ts";
import { freePort } from "../scripts/cluster.ts";

const COMPOSE = process.env.MOLECULE_DOCKER_COMPOSE ?? "docker-compose";
const dir = mkdtempSync(join(tmpdir(), "molecule-dpc-"));
const servers: ChildProcess[] = [];


/** A redis-server of this test's own on loopback, without persistence; `args` set its users. */
async function startRedis(args: string[], adminUrl: (port: number) => string): Promise<number> {
  const port = await freePort();
  const d = mkdtempSync(join(dir, "redis-"));
  const p = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", d, "--loglevel", "warning", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  servers.push(p);
  let err = "";
  p.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  await waitFor(async () => {
    if (p.exitCode !== null) throw new Error(`redis-server exited: ${err}`);
    return verifyRedis(adminUrl(port), 500).then(() => true);
  }, 5000);
  return port;
}

/** The resolved compose model for an .env file and extra variables (Debian's docker-compose is Python, so is its YAML parser). */
function composeConfig(envFile: string, env: Record<string, string> = {}) {
  const r = spawnSync(COMPOSE, ["--env-file", envFile, "-f", join(ROOT, "docker-compose.yml"), "config"], {
    cwd: ROOT,
    encoding: "utf8",
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
  });
  if (r.status !== 0) return { status: r.status, stderr: r.stderr, model: null };
  const j = spawnSync("python3", ["-c", "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"], { input: r.stdout, encoding: "utf8" });
  expect(j.status, j.stderr).toBe(0);
  return { status: 0, stderr: r.stderr, model: JSON.parse(j.stdout) as any };
}

function genEnv(file: string) {
  const r = spawnSync(join(ROOT, "deploy/gen-env"), [file], { encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  return Object.fromEntries(
    readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => /^[A-Z_]+=/.test(l))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  ) as Record<string, string>;
}

/** A shell through the stack: the journey a user relies on (create, open, echo, close). */
async function journey(redisUrl: string, ns?: string) {
  const s = await startStack({ redisUrl, ...(ns ? { api: { ns } } : {}) });
  try {
    const { token } = await s.org("creds");
    const ws = await readyWorkspace(s.url, token);
    const c = await openShell(s.wsUrl, ws, { token });
    expect((await c.run("echo cred-$((6*7))")).trim()).toBe("cred-42");
    await c.close();
  } finally {
    await s.close();
  }
}

afterAll(async () => {
  for (const p of servers) p.kill("SIGKILL");
  await Promise.all(servers.map((p) => (p.exitCode === null && p.signalCode === null ? new Promise((r) => p.once("exit", r)) : null)));
  rmSync(dir, { recursive: true, force: true });
});

describe("Redis with requirepass", () => {
  const password = `pw-${Math.random().toString(36).slice(2)}`;
  let port = 0;
  beforeAll(async () => {
    port = await startRedis(["--requirepass", password], (p) => `redis://:${password}@127.0.0.1:${p}`);
  });

  it("a whole stack (ioredis, BullMQ, the fire-and-forget writers) works with the password from the URL", async () => {
    await journey(`redis://:${password}@127.0.0.1:${port}`);
  });

  it("without it, or with a wrong one, fails with a clear error naming the URL but never the password", async () => {
    const wrong = `redis://:not-${password}@127.0.0.1:${port}`;
    const e1 = await verifyRedis(wrong).then(() => null, (e: Error) => e.message);
    expect(e1).toMatch(/refused the credentials: WRONGPASS/);
    expect(e1).toContain(`127.0.0.1:${port}`);
    expect(e1).not.toContain(password);
    const e2 = await verifyRedis(`redis://127.0.0.1:${port}`).then(() => null, (e: Error) => e.message);
    expect(e2).toMatch(/refused the credentials: NOAUTH/);

    // The writer says so at once (an error log line, `refusal`), not a silent hang.
    const lines: string[] = [];
    const log = pino({ level: "info" }, new Writable({ write: (c, _e, cb) => (lines.push(c.toString()), cb()) }));
    const w = createRedisWriter({ url: wrong, name: "dpc-wrong", log });
    try {
      await waitFor(async () => w.refusal, 5000);
      expect(w.refusal).toMatch(/WRONGPASS/);
      expect(w.ready).toBe(false);
      await expect(w.barrier()).rejects.toThrow(/not connected/);
      await waitFor(async () => lines.some((l) => /refused the connection set-up/.test(l)), 2000);
      expect(lines.join("")).not.toContain(password);
      expect(lines.join("")).toContain(":***@");
    } finally {
      await w.close();
    }

    // ./start and ./cluster stop at once (exit 2) with the reason.
    const r = spawnSync(
      process.execPath,
      ["--import", "tsx", "-e", `import("./scripts/lib.ts").then((m) => m.requireServices(${JSON.stringify(testUrls().databaseUrl)}, ${JSON.stringify(wrong)}))`],
      { cwd: ROOT, encoding: "utf8", timeout: 20_000 },
    );
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ refused the credentials: WRONGPASS/);
    expect(r.stderr).not.toContain(password);
  });
});

describe("Redis with docker-compose.yml's ACL users", () => {
  const ns = uniqueNs();
  let env: Record<string, string> = {};
  let port = 0;
  let admin: Redis;
  beforeAll(async () => {
    env = genEnv(join(dir, "acl.env"));
    const { model } = composeConfig(join(dir, "acl.env"), { MOLECULE_REDIS_PREFIX: ns });
    const cmd = model.services.redis.command as string[];
    // Exactly the users the compose file defines, for this test's prefix.
    const users = cmd.slice(cmd.indexOf("--user"));
    port = await startRedis(users, (p) => `redis://default:${env.REDIS_PASSWORD}@127.0.0.1:${p}`);
    admin = new Redis(`redis://default:${env.REDIS_PASSWORD}@127.0.0.1:${port}`);
  });
  afterAll(() => admin?.disconnect());

  for (const user of ["api", "worker"] as const) {
    it(`the ${user} user runs a whole stack and no command of it is refused`, async () => {
      await admin.acl("LOG", "RESET");
      const pw = user === "api" ? env.REDIS_API_PASSWORD : env.REDIS_WORKER_PASSWORD;
      await journey(`redis://${user}:${pw}@127.0.0.1:${port}`, ns);
      // Every command the journey sent was allowed: a denial would be in the ACL log.
      expect(await admin.acl("LOG")).toEqual([]);
    });
  }

  it("cannot read or write another prefix's keys, type into its shells, or list keys", async () => {
    await admin.set("other:term:{s1}:meta", "theirs");
    const r = new Redis(`redis://api:${env.REDIS_API_PASSWORD}@127.0.0.1:${port}`, { maxRetriesPerRequest: 0 });
    try {
      expect(await r.get(`${ns}:x`)).toBeNull();
      await expect(r.get("other:term:{s1}:meta")).rejects.toThrow(/NOPERM/);
      await expect(r.set("other:x", "1")).rejects.toThrow(/NOPERM/);
      await expect(r.publish("other:term:{s1}:in", "iecho PWNED\r")).rejects.toThrow(/NOPERM/);
      await expect(r.xrange("other:term:{s1}:log", "-", "+")).rejects.toThrow(/NOPERM/);
      await expect(r.keys("*")).rejects.toThrow(/NOPERM/);
      await expect(r.scan(0)).rejects.toThrow(/NOPERM/);
      await expect(r.config("GET", "requirepass")).rejects.toThrow(/NOPERM/);
      await expect(r.flushall()).rejects.toThrow(/NOPERM/);
      await expect(r.client("KILL", "TYPE", "normal")).rejects.toThrow(/NOPERM/);
      // A Lua script runs with the caller's rights.
      await expect(r.eval("return redis.call('GET', KEYS[1])", 1, "other:term:{s1}:meta")).rejects.toThrow(/NOPERM/);
      // Without a user and password nothing at all.
      expect(await verifyRedis(`redis://127.0.0.1:${port}`).then(() => "", (e: Error) => e.message)).toMatch(/NOAUTH/);
    } finally {
      r.disconnect();
    }
  });
});

describe("PostgreSQL credentials", () => {
  const role = `dpc_${Math.random().toString(36).slice(2, 10)}`;
  const password = `pw-${Math.random().toString(36).slice(2)}`;
  const su = postgres(testUrls().databaseUrl, { max: 1, onnotice: () => {} });
  beforeAll(async () => {
    await su.unsafe(`create role ${role} login password '${password}'`);
  });
  afterAll(async () => {
    await su.unsafe(`drop role if exists ${role}`);
    await su.end({ timeout: 2 });
  });

  it("postgres.js connects as the URL's user, and an unknown user is refused with a clear error", async () => {
    const u = new URL(testUrls().databaseUrl);
    u.username = role;
    u.password = password;
    const h = createDb(u.toString(), { max: 1 });
    try {
      const [row] = await h.sql<{ user: string }[]>`select current_user as user`;
      expect(row!.user).toBe(role);
    } finally {
      await h.close();
    }
    await expect(verifyDatabase(u.toString())).resolves.toBeUndefined();
    u.username = `${role}_nobody`;
    const msg = await verifyDatabase(u.toString()).then(() => "", (e: Error) => e.message);
    expect(msg).toMatch(/refused the connection: .*role .* does not exist/);
    expect(msg).toContain(":***@");
    expect(msg).not.toContain(password);
    // This machine's pg_hba.conf trusts loopback, so a wrong password is not tested here; the
    // compose PostgreSQL runs scram-sha-256 (checked below), where it is refused.
  });
});

describe("docker-compose.yml credentials", () => {
  it("deploy/gen-env writes every password once (0600, never overwriting) and config -q passes only with them", () => {
    const file = join(dir, "gen.env");
    writeFileSync(file, "POSTGRES_PASSWORD=kept\n", { mode: 0o644 });
    const first = genEnv(file);
    expect(first.POSTGRES_PASSWORD).toBe("kept");
    for (const k of ["REDIS_PASSWORD", "REDIS_API_PASSWORD", "REDIS_WORKER_PASSWORD"]) expect(first[k], k).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(genEnv(file)).toEqual(first);

    const ok = composeConfig(file);
    expect(ok.status, ok.stderr).toBe(0);
    const s = ok.model.services;
    expect(s.postgres.environment.POSTGRES_HOST_AUTH_METHOD).toBe("scram-sha-256");
    expect(s.api.environment.REDIS_URL).toBe(`redis://api:${first.REDIS_API_PASSWORD}@redis:6379`);
    expect(s["terminal-worker"].environment.REDIS_URL).toBe(`redis://worker:${first.REDIS_WORKER_PASSWORD}@redis:6379`);
    expect(s.api.environment.DATABASE_URL).toBe("postgres://postgres:kept@postgres:5432/molecule");
    // The admin password reaches redis-cli through the environment, not a command line.
    expect(s.redis.healthcheck.test.join(" ")).not.toContain(first.REDIS_PASSWORD);

    const empty = join(dir, "empty.env");
    writeFileSync(empty, "");
    const missing = composeConfig(empty);
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toMatch(/deploy\/gen-env/);
  });

  it("has no default password and never trust authentication", () => {
    const text = readFileSync(join(ROOT, "docker-compose.yml"), "utf8");
    expect(text).not.toMatch(/\$\{\w*PASSWORD:?-/);
    expect(text).not.toMatch(/AUTH_METHOD:.*trust/);
    expect(text).not.toMatch(/redis:\/\/redis:/);
    for (const v of ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "REDIS_API_PASSWORD", "REDIS_WORKER_PASSWORD"]) {
      expect(text).toMatch(new RegExp(`\\$\\{${v}:\\?`));
    }
  });
});
