/**
 * docker workspaces end to end: real API, worker, WebSocket, node-pty and bash. Only
 * the Docker engine is fake (bin/docker, an executable that keeps containers in a
 * temporary directory and runs `exec -it <c> /bin/bash` as a real bash).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDockerProvider, type DockerProviderOptions } from "../../apps/terminal-worker/src/providers/docker.ts";
import type { Provider } from "../../apps/terminal-worker/src/providers/types.ts";
import { descendants } from "../../apps/terminal-worker/src/terminal/kill-tree.ts";
import { call, waitFor } from "../helpers/http.ts";
import { cmdlineOf, processAlive } from "../helpers/procs.ts";
import { startStack, type Stack } from "../helpers/stack.ts";
import { openShell, TermClient } from "../helpers/term-client.ts";
import { FAKE_DOCKER_BIN, FakeDocker } from "./fake-docker.ts";

let fake: FakeDocker;
let s: Stack;
let token: string;
// The worker's docker provider, swappable per test (a worker without the docker CLI, say).
let current: Provider;
const use = (extra: Partial<DockerProviderOptions> = {}) => {
  current = createDockerProvider({ bin: FAKE_DOCKER_BIN, image: "debian:bookworm-slim", env: fake.env, ...extra });
};
const docker = new Proxy({} as Provider, { get: (_, key) => Reflect.get(current, key) });

beforeAll(async () => {
  fake = new FakeDocker();
  use();
  s = await startStack({ api: { provider: "docker" }, providers: { docker } });
  token = (await s.org("docker")).token;
}, 30_000);
afterAll(async () => {
  await s?.close();
  fake?.close();
});

const containerOf = (id: string) => `ws-${id.slice(0, 12)}`;

async function create(name: string): Promise<string> {
  const c = await call(s.url, "POST", "/workspaces", { token, body: { name, runtime: "hermes", tier: 2 } });
  expect(c.status).toBe(201);
  expect(c.body.provider).toBe("docker");
  return c.body.id as string;
}

async function settled(id: string) {
  return waitFor(async () => {
    const w = (await call(s.url, "GET", `/workspaces/${id}`, { token })).body;
    return w.status === "ready" || w.status === "failed" ? w : null;
  }, 15_000);
}

async function auditOf(ws: string, sessionId: string) {
  return waitFor(async () => {
    const r = await call(s.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token });
    const me = r.body.sessions.find((x: { id: string }) => x.id === sessionId);
    return me?.closed_at ? me : null;
  });
}

function treeOf(sessionId: string): number[] {
  const pid = s.worker!.terminal!.sessions.get(sessionId)?.pid;
  return pid ? [pid, ...descendants(pid)] : [];
}

describe("docker workspaces", () => {
  let ws: string;

  it("create: ready with the container's id as instance_id, one labelled container", async () => {
    ws = await create("docker-e2e");
    const w = await settled(ws);
    expect(w).toMatchObject({ status: "ready", error: null });
    const c = fake.container(containerOf(ws))!;
    expect(c).not.toBeNull();
    expect(w.instance_id).toBe(c.id);
    expect(c.labels["molecule.workspace"]).toBe(ws);
    expect(c.status).toBe("running");
  });

  it("the container is on the workspaces' own network with no-new-privileges and limits, nothing of the host", async () => {
    const c = fake.container(containerOf(ws))!;
    expect(c.hostConfig).toEqual({
      network: ["molecule-workspaces"],
      "security-opt": ["no-new-privileges"],
      "cap-drop": ["NET_RAW", "MKNOD", "AUDIT_WRITE"],
      "pids-limit": ["512"],
      memory: ["2g"],
      "memory-swap": ["2g"],
      cpus: ["2"],
    });
    const run = fake.callsOf("run", "-d", "--name", containerOf(ws))[0]!;
    expect(run.filter((a) => /^(-v|--volume|--mount|--privileged|--cap-add|--device|--add-host)\b/.test(a) || a.includes("docker.sock"))).toEqual([]);
    // Made by the worker: a bridge where workspaces cannot reach each other, with only workspaces on it.
    const n = fake.network("molecule-workspaces")!;
    expect(n).toMatchObject({ Driver: "bridge", Options: { "com.docker.network.bridge.enable_icc": "false" } });
    expect(Object.values(n.Containers).map((x) => x.Name)).toEqual([containerOf(ws)]);
  });

  it("Terminal: the shell runs in the container, knows its workspace, resizes, and its exit code ends the session", async () => {
    const c = await openShell(s.wsUrl, ws, { token, cols: 100, rows: 30 });
    await c.waitText(`root@${containerOf(ws)}`);
    const session = c.hello!.session;
    expect(fake.callsOf("exec", "-it").at(-1)).toEqual([
      "exec", "-it", "-e", "TERM=xterm-256color", "-e", `MOLECULE_WS_ID=${ws}`, "-e", `MOLECULE_SESSION_ID=${session}`, containerOf(ws), "/bin/bash",
    ]);
    expect((await c.run("echo $MOLECULE_WS_ID")).trim()).toBe(ws);
    expect((await c.run("echo $MOLECULE_SESSION_ID $TERM")).trim()).toBe(`${session} xterm-256color`);
    expect((await c.run("stty size")).trim()).toBe("30 100");
    c.resize(132, 43);
    await waitFor(async () => (await c.run("stty size")).trim() === "43 132", 5000, 100);

    c.send("exit 3\r");
    expect(await c.waitMessage("exit")).toMatchObject({ code: 3 });
    expect((await c.closed).code).toBe(1000);
    const row = await auditOf(ws, session);
    expect(row).toMatchObject({ provider: "docker", instance_id: fake.container(containerOf(ws))!.id, os_user: "root", close_reason: "exit", exit_code: 3 });
  });

  it("closing the socket kills the docker exec process tree and hangs up the session's processes in the container", async () => {
    const c = await openShell(s.wsUrl, ws, { token });
    await c.waitText(`root@${containerOf(ws)}`);
    const session = c.hello!.session;
    await c.run("sleep 600 & true");
    // In a real container everything outlives the docker CLI; here these two left the CLI's tree.
    const escaped = Number((await c.run("(setsid sleep 601 </dev/null >/dev/null 2>&1 & echo $!)")).trim());
    const nohup = Number((await c.run("(setsid nohup sleep 602 </dev/null >/dev/null 2>&1 & echo $!)")).trim());
    const tree = treeOf(session);
    try {
      expect(cmdlineOf(tree[0]!)).toMatch(/bash/);
      expect(tree.map(cmdlineOf).some((x) => x.startsWith("sleep 600"))).toBe(true);
      expect(tree).not.toContain(escaped);
      expect(processAlive(escaped) && processAlive(nohup)).toBe(true);

      await c.close(1000);
      await waitFor(async () => tree.every((p) => !processAlive(p)), 5000, 20);
      await waitFor(async () => !processAlive(escaped), 5000, 20);
      expect(processAlive(nohup)).toBe(true);
      expect(fake.callsOf("exec", containerOf(ws), "/bin/sh", "-c").at(-1)!.slice(-2)).toEqual(["molecule-hangup", session]);
      expect((await auditOf(ws, session)).close_reason).toBe("client_closed");
    } finally {
      for (const p of [escaped, nohup]) if (p > 0 && processAlive(p)) process.kill(p, "SIGKILL");
    }
  });

  it("a stopped or missing container: the Terminal closes with 4409 not_ready", async () => {
    const name = containerOf(ws);
    for (const [arrange, says] of [
      [() => fake.docker("stop", name), /is exited; restart the workspace/],
      [() => fake.docker("rm", "-f", name), /does not exist/],
    ] as const) {
      expect(arrange().status).toBe(0);
      const c = new TermClient(s.wsUrl, ws, { token });
      expect(await c.refused).toBeNull();
      const err = await c.waitMessage("error");
      expect(err).toMatchObject({ code: "not_ready", message: expect.stringMatching(says) });
      expect((await c.closed).code).toBe(4409);
    }
  });

  it("restart recreates the container; delete removes it", async () => {
    const before = (await call(s.url, "GET", `/workspaces/${ws}`, { token })).body.instance_id;
    expect((await call(s.url, "POST", `/workspaces/${ws}/restart`, { token })).status).toBe(202);
    const w = await settled(ws);
    expect(w.status).toBe("ready");
    const c = fake.container(containerOf(ws))!;
    expect(w.instance_id).toBe(c.id);
    expect(w.instance_id).not.toBe(before);

    expect((await call(s.url, "DELETE", `/workspaces/${ws}`, { token })).status).toBe(202);
    await waitFor(async () => (await call(s.url, "GET", `/workspaces/${ws}`, { token })).body.status === "removed");
    expect(fake.container(containerOf(ws))).toBeNull();
    expect(fake.callsOf("rm", "-f", containerOf(ws)).length).toBeGreaterThan(0);
  });
});

describe("docker workspaces that cannot be provisioned fail with a message", () => {
  it("a configured network the platform's containers are on", async () => {
    fake.docker("network", "create", "--label", "com.docker.compose.network=default", "--label", "com.docker.compose.project=molecule", "molecule_default");
    use({ network: "molecule_default" });
    try {
      const id = await create("compose-network");
      const w = await settled(id);
      expect(w.status).toBe("failed");
      expect(w.error).toMatch(/docker network molecule_default \(MOLECULE_DOCKER_NETWORK\) may not carry workspaces/);
      expect(fake.container(containerOf(id))).toBeNull();
    } finally {
      use();
    }
  });

  it("no docker CLI on the worker", async () => {
    use({ bin: "docker", env: { PATH: "/nonexistent" } });
    try {
      const id = await create("no-docker");
      const w = await settled(id);
      expect(w.status).toBe("failed");
      expect(w.error).toMatch(/docker CLI "docker" is not installed on the terminal worker.*MOLECULE_DOCKER_BIN/);
    } finally {
      use();
    }
  });

  it("an image the registry does not have", async () => {
    fake.list("missing-images", ["registry.example/molecule/missing:1"]);
    use({ image: "registry.example/molecule/missing:1" });
    try {
      const id = await create("no-image");
      const w = await settled(id);
      expect(w.status).toBe("failed");
      expect(w.error).toMatch(/cannot pull the workspace image registry\.example\/molecule\/missing:1/);
      expect(fake.container(containerOf(id))).toBeNull();
    } finally {
      use();
    }
  });
});
