/**
 * The docker provider against the real Docker Engine: real API, worker, WebSocket, node-pty,
 * `docker exec -it` into real containers from the Debian image deploy/local-images builds
 * (no registry here). The fake-CLI tests beside this file keep the argv.
 */
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDockerProvider } from "../../apps/terminal-worker/src/providers/docker.ts";
import { ROOT } from "../../scripts/processes.ts";
import { call, waitFor } from "../helpers/http.ts";
import { startStack, type Stack } from "../helpers/stack.ts";
import { openShell } from "../helpers/term-client.ts";
import { DOCKER, DOCKER_ENV, docker, engineUp, ipOf, LISTENER, localImages, tcpFrom } from "./real-engine.ts";

const tag = randomBytes(3).toString("hex");
// Networks of this file's own (never the default molecule-workspaces another run may use).
const WS_NET = `mtest-ws-${tag}`;
const PLATFORM_NET = `mtest-platform-${tag}`;
const PLATFORM = `mtest-platform-${tag}`;
let s: Stack;
let token: string;
let image: string;
const made: string[] = [];
/** Whether this process (on the host) gets the listener's "hello" from host:port. */
function hostConnects(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host, port, timeout: 2000 });
    sock.on("data", (d) => {
      sock.destroy();
      resolve(d.toString().startsWith("hello"));
    });
    sock.on("timeout", () => {
      sock.destroy();
      resolve(false);
    });
    sock.on("error", () => resolve(false));
  });
}
const containerOf = (id: string) => `ws-${id.slice(0, 12)}`;

describe.skipIf(!engineUp)("deploy/local-images", () => {
  it("writes the stand-ins' names into .env, replacing only its own lines, and builds nothing twice", () => {
    const dir = mkdtempSync(join(tmpdir(), "molecule-li-"));
    const file = join(dir, ".env");
    try {
      writeFileSync(file, "POSTGRES_PASSWORD=keep-me\nNODE_IMAGE=stale:1\nPORT=9999\n");
      const images = localImages();
      const run = () => spawnSync(join(ROOT, "deploy/local-images"), ["--no-app", "--env-file", file], { env: { ...DOCKER_ENV, DOCKER }, encoding: "utf8", timeout: 600_000 });
      const first = run();
      expect(first.status, first.stderr).toBe(0);
      expect(first.stderr).not.toMatch(/building|debootstrap/);
      const lines = readFileSync(file, "utf8").trim().split("\n");
      expect(lines.slice(0, 2)).toEqual(["POSTGRES_PASSWORD=keep-me", "PORT=9999"]);
      expect(lines.slice(2).sort()).toEqual(Object.entries(images).map(([k, v]) => `${k}=${v}`).sort());
      expect(run().status).toBe(0);
      expect(readFileSync(file, "utf8").trim().split("\n")).toEqual(lines);
      expect(statSync(file).mode & 0o777).toBe(0o600);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 20 * 60_000);
});

describe.skipIf(!engineUp)("the docker provider on the real engine", () => {
  beforeAll(async () => {
    image = localImages().DEBIAN_IMAGE;
    const docker_ = createDockerProvider({ bin: DOCKER, image, images: { crewai: "molecule-local/no-such-image:never" }, network: WS_NET, env: DOCKER_ENV });
    // The production provisioning deadline (5 min), not the test stack's 60 s: the missing-image
    // case below is retried for about a minute before it fails with its own message.
    s = await startStack({ api: { provider: "docker" }, worker: { provisionTimeoutMs: 300_000 }, providers: { docker: docker_ } });
    token = (await s.org("real-docker")).token;
    // A stand-in for the platform's containers (Redis, PostgreSQL, API) on a network of their own.
    expect(docker(["network", "create", "--label", "molecule.test=real-docker", PLATFORM_NET]).status).toBe(0);
    const p = docker(["run", "-d", "--name", PLATFORM, "--label", "molecule.test=real-docker", "--network", PLATFORM_NET, image, ...LISTENER, "6379"]);
    expect(p.status, p.stderr).toBe(0);
  }, 20 * 60_000);

  afterAll(async () => {
    await s?.close();
    for (const name of [...made.map(containerOf), PLATFORM]) docker(["rm", "-f", name]);
    for (const n of [WS_NET, PLATFORM_NET]) docker(["network", "rm", n]);
  }, 60_000);

  async function create(name: string, runtime = "hermes"): Promise<string> {
    const c = await call(s.url, "POST", "/workspaces", { token, body: { name, runtime, tier: 2 } });
    expect(c.status).toBe(201);
    made.push(c.body.id);
    return c.body.id as string;
  }
  async function settled(id: string, ms = 60_000) {
    return waitFor(async () => {
      const w = (await call(s.url, "GET", `/workspaces/${id}`, { token })).body;
      return w.status === "ready" || w.status === "failed" ? w : null;
    }, ms, 200);
  }
  const inspect = (name: string) => {
    const r = docker(["inspect", name]);
    return r.status === 0 ? (JSON.parse(r.stdout)[0] as any) : null;
  };

  let ws: string;
  let other: string;

  it("create: a real running container, labelled, on the workspaces' own network, hardened and limited", async () => {
    ws = await create("real-1");
    const w = await settled(ws);
    expect(w).toMatchObject({ status: "ready", error: null });
    const c = inspect(containerOf(ws));
    expect(c.Id).toBe(w.instance_id);
    expect(c.State.Running).toBe(true);
    expect(c.Config.Labels["molecule.workspace"]).toBe(ws);
    expect(c.Config.Env).toContain(`MOLECULE_WS_ID=${ws}`);
    expect(Object.keys(c.NetworkSettings.Networks)).toEqual([WS_NET]);
    expect(c.HostConfig).toMatchObject({ SecurityOpt: ["no-new-privileges"], PidsLimit: 512, Memory: 2 * 1024 ** 3, MemorySwap: 2 * 1024 ** 3, NanoCpus: 2e9, Privileged: false });
    expect(c.HostConfig.CapDrop.sort()).toEqual(["AUDIT_WRITE", "MKNOD", "NET_RAW"]);
    expect(c.Mounts).toEqual([]);
    const n = JSON.parse(docker(["network", "inspect", WS_NET]).stdout)[0];
    expect(n.Options["com.docker.network.bridge.enable_icc"]).toBe("false");
  });

  it("Terminal through docker exec -it: whoami root, MOLECULE_WS_ID, resize follows, the exit code ends the session", async () => {
    const c = await openShell(s.wsUrl, ws, { token, cols: 100, rows: 30 });
    await c.waitText(`root@${containerOf(ws)}`, 20_000);
    expect((await c.run("whoami")).trim()).toBe("root");
    expect((await c.run("echo $MOLECULE_WS_ID")).trim()).toBe(ws);
    expect((await c.run("hostname")).trim()).toBe(containerOf(ws));
    expect((await c.run("stty size")).trim()).toBe("30 100");
    c.resize(132, 43);
    await waitFor(async () => (await c.run("stty size")).trim() === "43 132", 10_000, 200);
    expect(await c.run("df -h / | tail -1")).toMatch(/overlay/);
    c.send("exit 3\r");
    expect(await c.waitMessage("exit")).toMatchObject({ code: 3 });
    const row = await waitFor(async () => {
      const r = await call(s.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token });
      return r.body.sessions.find((x: { id: string; closed_at: string | null }) => x.id === c.hello!.session && x.closed_at) ?? null;
    });
    expect(row).toMatchObject({ provider: "docker", os_user: "root", close_reason: "exit", exit_code: 3, instance_id: inspect(containerOf(ws)).Id });
  });

  it("closing the socket kills the exec'd process tree inside the container; a nohup job survives", async () => {
    const c = await openShell(s.wsUrl, ws, { token });
    await c.waitText(`root@${containerOf(ws)}`, 20_000);
    // The last line: an interactive bash prints the job ("[1] 123") first.
    const pid = async (cmd: string) => Number((await c.run(cmd)).trim().split("\n").pop());
    const bg = await pid("sleep 600 & echo $!");
    const escaped = await pid("(setsid sleep 601 </dev/null >/dev/null 2>&1 & echo $!)");
    const nohup = await pid("(setsid nohup sleep 602 </dev/null >/dev/null 2>&1 & echo $!)");
    expect([bg, escaped, nohup].every((p) => p > 1)).toBe(true);
    const alive = (pid: number) => docker(["exec", containerOf(ws), "test", "-d", `/proc/${pid}`]).status === 0;
    expect([bg, escaped, nohup].every(alive)).toBe(true);
    await c.close(1000);
    // Processes `docker exec` started outlive the CLI: only the provider's hang-up ends them.
    await waitFor(async () => !alive(bg) && !alive(escaped), 15_000, 200);
    expect(alive(nohup)).toBe(true);
    const shells = docker(["exec", containerOf(ws), "sh", "-c", "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '"]).stdout;
    expect(shells).not.toMatch(/bash/);
  });

  it("isolation: a workspace reaches neither another workspace nor the platform's containers, though both listen", async () => {
    other = await create("real-2");
    expect((await settled(other)).status).toBe("ready");
    expect(docker(["exec", "-d", containerOf(other), ...LISTENER, "7000"]).status).toBe(0);
    const otherIp = ipOf(containerOf(other), WS_NET);
    const platformIp = ipOf(PLATFORM, PLATFORM_NET);
    // The listeners are real: the host (the worker's side) reaches both on those addresses.
    await waitFor(async () => (await hostConnects(otherIp, 7000)) && (await hostConnects(platformIp, 6379)), 15_000, 200);
    // ICC off on the workspace network; another bridge is isolated by docker's firewall.
    expect(tcpFrom(containerOf(ws), otherIp, 7000)).not.toBe("open");
    expect(tcpFrom(containerOf(ws), platformIp, 6379)).not.toBe("open");
  });

  it("restart recreates the container from its image; delete removes it", async () => {
    const before = inspect(containerOf(ws)).Id;
    expect((await call(s.url, "POST", `/workspaces/${ws}/restart`, { token })).status).toBe(202);
    const w = await waitFor(async () => {
      const x = (await call(s.url, "GET", `/workspaces/${ws}`, { token })).body;
      return x.status === "ready" && x.instance_id !== before ? x : null;
    }, 60_000, 200);
    expect(inspect(containerOf(ws))).toMatchObject({ Id: w.instance_id, State: { Running: true } });
    expect(inspect(before)).toBeNull();

    for (const id of [ws, other]) expect((await call(s.url, "DELETE", `/workspaces/${id}`, { token })).status).toBe(202);
    await waitFor(async () => inspect(containerOf(ws)) === null && inspect(containerOf(other)) === null, 30_000, 200);
  });

  it("an image that is neither on the host nor pullable fails the workspace with what to do", async () => {
    const id = await create("missing-image", "crewai");
    // The pull is retried with backoff (a registry outage is brief): about a minute in all.
    const w = await settled(id, 150_000);
    expect(w.status).toBe("failed");
    expect(w.error).toMatch(/workspace image molecule-local\/no-such-image:never is not on the worker's Docker host.*load or build the image there.*MOLECULE_DOCKER_IMAGE/);
    expect(inspect(containerOf(id))).toBeNull();
  }, 180_000);
});
