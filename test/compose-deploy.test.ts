/**
 * docker-compose.yml run for real: the images built here (deploy/local-images: no registry),
 * `docker-compose up -d --build` under a project name of this test's own on free loopback ports,
 * then the seed journey through the load balancer (API and Canvas), scaling, and faults
 * (a worker container killed, an API replica stopped, Redis restarted). Workspaces are
 * containers of the same engine (the docker provider, the compose default) on a network of
 * this project's own. Everything it made is removed at the end; nothing else is touched.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureCanvasBuilt, launchChromium, type Browser } from "../apps/canvas/e2e/browser.ts";
import { ROOT } from "../scripts/processes.ts";
import { DOCKER_ENV, docker, engineUp, ipOf, LISTENER, localImages, tcpFrom, TEST_TAG } from "./docker/real-engine.ts";
import { call, waitFor } from "./helpers/http.ts";
import { openShell, type TermClient } from "./helpers/term-client.ts";
import { freePort } from "../scripts/cluster.ts";

const COMPOSE = process.env.MOLECULE_DOCKER_COMPOSE ?? "docker-compose";
const project = `mtest-${randomBytes(3).toString("hex")}`;
const wsNet = `${project}-ws`;
const appNet = `${project}_default`;
const token = `mol_${randomBytes(32).toString("base64url").slice(0, 43)}`;
let dir: string;
let envFile: string;
let base: string;
let wsBase: string;
const ports: Record<string, number> = {};
const made: string[] = [];

function compose(args: string[], timeoutMs = 300_000) {
  const r = spawnSync(COMPOSE, ["-p", project, "-f", join(ROOT, "docker-compose.yml"), "--env-file", envFile, ...args], {
    cwd: ROOT,
    env: DOCKER_ENV,
    encoding: "utf8",
    timeout: timeoutMs,
  });
  return { status: r.status, out: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}
function mustCompose(args: string[], timeoutMs?: number): string {
  const r = compose(args, timeoutMs);
  if (r.status !== 0) throw new Error(`docker-compose ${args.join(" ")} failed: ${r.out.slice(-3000)}`);
  return r.out;
}

/** The service's containers, by name, with their short ids (the hostnames in worker and node ids). */
function containers(service: string): { name: string; id: string; running: boolean }[] {
  const r = docker(["ps", "-a", "--filter", `label=com.docker.compose.project=${project}`, "--filter", `label=com.docker.compose.service=${service}`, "--format", "{{.Names}} {{.ID}} {{.State}}"]);
  return r.stdout
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => {
      const [name, id, state] = l.split(" ");
      return { name: name!, id: id!.slice(0, 12), running: state === "running" };
    });
}
const health = (name: string) => docker(["inspect", "--format", "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}", name]).stdout.trim();

async function allHealthy(counts: Record<string, number>, ms = 180_000): Promise<void> {
  await waitFor(
    async () => Object.entries(counts).every(([svc, n]) => {
      const cs = containers(svc).filter((c) => c.running);
      return cs.length === n && cs.every((c) => health(c.name) === "healthy");
    }),
    ms,
    1000,
  );
}

const APP_IMAGES = [`molecule-api:${TEST_TAG}`, `molecule-terminal-worker:${TEST_TAG}`];
const imageId = (ref: string) => docker(["image", "inspect", "--format", "{{.Id}}", ref]).stdout.trim() || null;
/**
 * Runs a build that re-tags the tests' app images and removes the images it untagged (this
 * test's own earlier builds), so runs do not pile up dangling images; nothing else is touched.
 */
function rebuilding<T>(build: () => T): T {
  const before = APP_IMAGES.map(imageId);
  const out = build();
  const now = new Set(APP_IMAGES.map(imageId));
  for (const id of before) if (id && !now.has(id)) docker(["rmi", id]);
  return out;
}


async function create(name: string): Promise<string> {
  const r = await call(base, "POST", "/workspaces", { token, body: { name, runtime: "hermes", tier: 2 } });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  made.push(r.body.id);
  const w = await waitFor(async () => {
    const x = (await call(base, "GET", `/workspaces/${r.body.id}`, { token })).body;
    return x.status === "ready" || x.status === "failed" ? x : null;
  }, 60_000, 250);
  expect(w).toMatchObject({ status: "ready", provider: "docker", error: null });
  return r.body.id as string;
}
const sessions = async (ws: string) => (await call(base, "GET", `/workspaces/${ws}/terminal/sessions`, { token })).body.sessions as any[];
const rowOf = async (ws: string, id: string) => (await sessions(ws)).find((x) => x.id === id);
/** The worker container (short id) a session runs on: worker ids are `worker-<hostname>-<pid>`. */
const workerOf = (row: { worker_id: string }) => /^worker-([0-9a-f]{12})-/.exec(row.worker_id)?.[1];

/** Open terminal sockets per API container, from each replica's own /metrics. */
async function socketsPerApi(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const c of containers("api").filter((x) => x.running)) {
    const text = await (await fetch(`http://${ipOf(c.name, appNet)}:8080/metrics`)).text();
    const m = /^molecule_terminal_sessions_active(?:\{[^}]*\})? (\d+)/m.exec(text);
    out.set(c.name, m ? Number(m[1]) : 0);
  }
  return out;
}

/** Parses "line N" output and checks it is exactly 1..n, once each, in order. */
function expectEveryLineOnce(text: string, n: number): void {
  const nums = [...text.matchAll(/^line (\d+)\r?$/gm)].map((m) => Number(m[1]));
  expect(nums.length).toBe(n);
  for (let i = 0; i < n; i++) if (nums[i] !== i + 1) throw new Error(`line ${i + 1} is ${nums[i]} (lost, repeated or reordered)`);
}

describe.skipIf(!engineUp)("docker compose deployment (real engine, images built here)", () => {
  beforeAll(async () => {
    const images = rebuilding(() => localImages({ app: true }));
    dir = mkdtempSync(join(tmpdir(), "molecule-compose-"));
    envFile = join(dir, ".env");
    for (const k of ["PORT", "POSTGRES_PORT", "REDIS_PORT"]) ports[k] = await freePort();
    const vars: Record<string, string> = {
      ...images,
      PORT: String(ports.PORT),
      POSTGRES_PORT: String(ports.POSTGRES_PORT),
      REDIS_PORT: String(ports.REDIS_PORT),
      MOLECULE_DOCKER_NETWORK: wsNet,
      MOLECULE_BOOTSTRAP_TOKEN: token,
      MOLECULE_TAG: TEST_TAG,
    };
    writeFileSync(envFile, Object.entries(vars).map(([k, v]) => `${k}=${v}\n`).join(""), { mode: 0o600 });
    const gen = spawnSync(join(ROOT, "deploy/gen-env"), [envFile], { encoding: "utf8" });
    expect(gen.status, gen.stderr).toBe(0);
    rebuilding(() => mustCompose(["up", "-d", "--build"], 20 * 60_000));
    await allHealthy({ postgres: 1, redis: 1, api: 2, "terminal-worker": 1, lb: 1 });
    base = `http://127.0.0.1:${ports.PORT}`;
    wsBase = base.replace(/^http/, "ws");
    await waitFor(async () => (await fetch(`${base}/readyz`).catch(() => null))?.ok === true, 30_000, 500);
  }, 25 * 60_000);

  afterAll(() => {
    if (!envFile) return;
    // Workspace containers are the engine's, not the project's: removed by their label.
    for (const id of made) docker(["rm", "-f", `ws-${id.slice(0, 12)}`]);
    const leftovers = docker(["ps", "-aq", "--filter", `network=${wsNet}`]).stdout.trim().split("\n").filter(Boolean);
    if (leftovers.length) docker(["rm", "-f", ...leftovers]);
    compose(["down", "-v", "--remove-orphans", "-t", "5"], 180_000);
    docker(["network", "rm", wsNet]);
    rmSync(dir, { recursive: true, force: true });
  }, 240_000);

  it("publishes only loopback ports, as configured; the stand-ins behave as the compose file expects", () => {
    const published = docker(["ps", "--filter", `label=com.docker.compose.project=${project}`, "--format", "{{.Ports}}"]).stdout;
    const hostSide = [...published.matchAll(/([0-9.:]+):(\d+)->/g)].map((m) => `${m[1]}:${m[2]}`).sort();
    expect(hostSide).toEqual([`127.0.0.1:${ports.PORT}`, `127.0.0.1:${ports.POSTGRES_PORT}`, `127.0.0.1:${ports.REDIS_PORT}`].sort());
    const env = Object.fromEntries(readFileSync(envFile, "utf8").trim().split("\n").map((l) => l.split(/=(.*)/s).slice(0, 2)));
    const pg = containers("postgres")[0]!.name;
    const redis = containers("redis")[0]!.name;
    // PostgreSQL: scram over TCP, the password from .env; a wrong one is refused.
    const psql = (pw: string) => docker(["exec", "-e", `PGPASSWORD=${pw}`, pg, "psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "molecule", "-Atc", "select current_setting('password_encryption')"]);
    expect(psql(env.POSTGRES_PASSWORD).stdout.trim()).toBe("scram-sha-256");
    expect(psql("wrong").stderr).toMatch(/password authentication failed/);
    // Redis: AOF on, noeviction, the api user confined to its commands.
    expect(docker(["exec", redis, "redis-cli", "config", "get", "appendonly"]).stdout).toMatch(/appendonly\nyes/);
    expect(docker(["exec", redis, "redis-cli", "config", "get", "maxmemory-policy"]).stdout).toMatch(/noeviction/);
    expect(docker(["exec", redis, "ls", "/data/appendonlydir"]).stdout).toMatch(/\.aof/);
    const asApi = docker(["exec", "-e", `REDISCLI_AUTH=${env.REDIS_API_PASSWORD}`, redis, "redis-cli", "--user", "api", "keys", "*"]);
    expect(asApi.stdout + asApi.stderr).toMatch(/NOPERM/);
  });

  it("the seed journey through the load balancer: create, ready, Terminal (whoami root, df -h /, MOLECULE_WS_ID)", async () => {
    const ws = await create("seed");
    const c = await openShell(wsBase, ws, { token, cols: 120, rows: 30 });
    expect((await c.run("whoami")).trim()).toBe("root");
    expect((await c.run("echo $MOLECULE_WS_ID")).trim()).toBe(ws);
    expect(await c.run("df -h /")).toMatch(/Filesystem[\s\S]*overlay/);
    expect((await c.run("hostname")).trim()).toBe(`ws-${ws.slice(0, 12)}`);
    await c.close();
    const row = await waitFor(async () => ((await rowOf(ws, c.hello!.session))?.closed_at ? rowOf(ws, c.hello!.session) : null));
    expect(row).toMatchObject({ provider: "docker", os_user: "root", close_reason: "client_closed" });
    expect(workerOf(row)).toBe(containers("terminal-worker")[0]!.id);
  });

  it("the Canvas in Chromium through the load balancer: sign in, the workspace, a Terminal", { timeout: 120_000 }, async () => {
    ensureCanvasBuilt();
    let browser: Browser | null = null;
    try {
      browser = await launchChromium();
      const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
      await page.goto(base);
      await page.getByLabel("Organisation token").fill(token);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("heading", { name: "Workspaces" }).waitFor();
      await page.locator("tr[data-workspace]", { hasText: "seed" }).locator('.status[data-status="ready"]').waitFor({ timeout: 30_000 });
      await page.getByRole("button", { name: "Open a terminal in seed" }).click();
      await page.waitForFunction(() => window.moleculeCanvas?.terminals()[0]?.state === "open", null, { timeout: 30_000 });
      await page.keyboard.type("echo canvas-$((6*7)) $(whoami)");
      await page.keyboard.press("Enter");
      await page.waitForFunction(() => /canvas-42 root/.test(window.moleculeCanvas!.terminals()[0]!.text()), null, { timeout: 20_000 });
    } finally {
      await browser?.close().catch(() => {});
    }
  });

  it("a workspace container reaches neither the platform's containers nor another workspace", async () => {
    const a = `ws-${made[0]!.slice(0, 12)}`;
    const b = `ws-${(await create("neighbour")).slice(0, 12)}`;
    expect(Object.keys(JSON.parse(docker(["inspect", a]).stdout)[0].NetworkSettings.Networks)).toEqual([wsNet]);
    const targets: [string, number][] = [
      [ipOf(containers("redis")[0]!.name, appNet), 6379],
      [ipOf(containers("postgres")[0]!.name, appNet), 5432],
      ...containers("api").map((c): [string, number] => [ipOf(c.name, appNet), 8080]),
      [ipOf(b, wsNet), 7000],
    ];
    expect(docker(["exec", "-d", b, ...LISTENER, "7000"]).status).toBe(0);
    await waitFor(async () => tcpFrom(b, "127.0.0.1", 7000) === "open", 10_000, 250);
    // The platform's services do listen (the load balancer reaches the API, the API Redis).
    expect(tcpFrom(containers("lb")[0]!.name, targets[0]![0], 6379)).toBe("open");
    for (const [host, port] of targets) expect(tcpFrom(a, host, port), `${host}:${port}`).not.toBe("open");
  });

  it("--scale terminal-worker=4 --scale api=3: new sessions spread over the 4 workers, any replica serves any session", { timeout: 300_000 }, async () => {
    mustCompose(["up", "-d", "--no-build", "--scale", "terminal-worker=4", "--scale", "api=3"], 240_000);
    await allHealthy({ api: 3, "terminal-worker": 4, lb: 1 });
    const ws = made[0]!;
    const workers = new Set(containers("terminal-worker").map((c) => c.id));
    expect(workers.size).toBe(4);
    const clients: TermClient[] = [];
    try {
      const seen = new Set<string>();
      let replicas = 0;
      // Terminal jobs go to whichever worker takes them first, sockets to the replica haproxy picks
      // (a new replica joins it once Docker's DNS names it): open until every worker has a
      // session and every replica a socket (bounded).
      for (let i = 0; i < 40 && (seen.size < 4 || replicas < 3); i++) {
        const c = await openShell(wsBase, ws, { token });
        clients.push(c);
        await c.run("true");
        const w = workerOf(await rowOf(ws, c.hello!.session));
        if (w) seen.add(w);
        replicas = [...(await socketsPerApi()).values()].filter((n) => n > 0).length;
      }
      expect([...seen].sort()).toEqual([...workers].sort());
      expect(replicas).toBe(3);
      // One session, its socket dropped and re-attached through the load balancer three times:
      // whichever replica takes it serves the same shell, with no byte lost or repeated.
      let c = clients[0]!;
      const pid = (await c.run("echo $$")).trim();
      for (let i = 0; i < 3; i++) {
        await c.run(`echo round-$((${i}+1))`);
        const offset = c.offset;
        c.drop();
        await c.closed;
        const r = await openShell(wsBase, ws, { token, session: c.hello!.session, offset });
        expect(r.hello!.offset).toBe(offset);
        expect((await r.run("echo $$")).trim()).toBe(pid);
        c = r;
      }
      clients[0] = c;
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  it("docker kill of one worker container: its sessions get worker_lost within 5 s, their audit rows close, and another worker hangs up the shell it left in the workspace", async () => {
    const ws = made[0]!;
    const c = await openShell(wsBase, ws, { token });
    // The shell's pid in the workspace container (a docker exec shell outlives the CLI that started it).
    const pid = (await c.run("echo $$")).trim();
    expect(pid).toMatch(/^[0-9]+$/);
    const alive = () => docker(["exec", `ws-${ws.slice(0, 12)}`, "/bin/sh", "-c", `kill -0 ${pid}`]).status === 0;
    expect(alive()).toBe(true);
    const row = await rowOf(ws, c.hello!.session);
    const victim = containers("terminal-worker").find((x) => x.id === workerOf(row))!;
    expect(victim).toBeDefined();
    const t0 = performance.now();
    // `docker-compose kill` takes whole services: one replica is killed through the engine.
    expect(docker(["kill", "--signal", "KILL", victim.name]).status).toBe(0);
    const err = await c.waitMessage("error", 8000);
    expect(err.code).toBe("worker_lost");
    expect(performance.now() - t0).toBeLessThan(5000);
    expect((await c.closed).code).toBe(4500);
    const closed = await waitFor(async () => ((await rowOf(ws, c.hello!.session))?.closed_at ? rowOf(ws, c.hello!.session) : null), 15_000, 250);
    expect(closed.close_reason).toBe("worker_lost");
    // The API queued a hang-up with the close; a surviving worker ran it in the container.
    await waitFor(async () => !alive(), 20_000, 250);
    // The survivors still serve new sessions.
    const d = await openShell(wsBase, ws, { token });
    expect((await d.run("echo alive-$((1+1))")).trim()).toBe("alive-2");
    await d.close();
  });

  it("docker stop of the API replica holding a socket: the client re-attaches through another with nothing lost or repeated", { timeout: 120_000 }, async () => {
    const ws = made[0]!;
    await waitFor(async () => [...(await socketsPerApi()).values()].every((n) => n === 0), 15_000, 250);
    const c = await openShell(wsBase, ws, { token });
    const pid = (await c.run("echo $$")).trim();
    const holder = await waitFor(async () => [...(await socketsPerApi()).entries()].find(([, n]) => n === 1)?.[0], 10_000, 250);
    const from = c.text().length;
    c.send("stty -echo; for i in $(seq 1 1500); do echo line $i; [ $((i % 10)) = 0 ] && sleep 0.01; done; echo counter-$((1))-done; stty echo\r");
    await c.waitText(/^line 100\r$/m, 20_000);
    // SIGTERM, as compose sends it: the replica drains, its clients get 1012 `restarting`.
    const stop = docker(["stop", "-t", "15", holder], { timeoutMs: 30_000 });
    expect(stop.status, stop.stderr).toBe(0);
    expect((await c.closed).code).toBe(1012);
    const r = await openShell(wsBase, ws, { token, session: c.hello!.session, offset: c.offset });
    await r.waitText("counter-1-done", 60_000);
    expect(r.messages.filter((m) => m.type === "gap")).toEqual([]);
    expectEveryLineOnce(c.text().slice(from) + r.text(), 1500);
    expect((await r.run("echo $$")).trim()).toBe(pid);
    await r.close();
    expect(docker(["start", holder]).status).toBe(0);
  });

  it("docker-compose restart redis: open sessions continue, no output lost", { timeout: 120_000 }, async () => {
    const ws = made[0]!;
    const c = await openShell(wsBase, ws, { token });
    const pid = (await c.run("echo $$")).trim();
    const from = c.text().length;
    c.send("stty -echo; for i in $(seq 1 600); do echo line $i; sleep 0.02; done; echo counter-$((1))-done; stty echo\r");
    await c.waitText(/^line 50\r$/m, 20_000);
    mustCompose(["restart", "-t", "5", "redis"], 60_000);
    await c.waitText("counter-1-done", 60_000);
    expectEveryLineOnce(c.text().slice(from), 600);
    expect(c.messages.filter((m) => m.type === "gap" || m.type === "error")).toEqual([]);
    expect((await c.run("echo $$")).trim()).toBe(pid);
    await c.close();
  });
});
