import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FakeDocker, FAKE_DOCKER_BIN, SYSTEM_PATH } from "../../../../test/docker/fake-docker.ts";
import { processAlive } from "../../../../test/helpers/procs.ts";
import { workerEnvSchema } from "../env.ts";
import { findExecutable } from "./executables.ts";
import {
  classifyDockerError,
  createDockerProvider,
  diagnoseDockerExit,
  DockerCliError,
  IMAGE_REF_RE,
  parseRuntimeImages,
  parseTierLimits,
  pullProviderError,
  type DockerProviderOptions,
} from "./docker.ts";
import { ProviderError, TerminalUnavailableError, type ShellCommand, type WorkspaceRow } from "./types.ts";

// The real docker CLI, when this machine has one (there is no daemon): its own error messages.
const realDocker = await findExecutable("docker", `/usr/local/bin:${SYSTEM_PATH}`);

let fake: FakeDocker;
beforeEach(() => {
  fake = new FakeDocker();
});
afterEach(() => fake.close());

function provider(extra: Partial<DockerProviderOptions> = {}) {
  return createDockerProvider({ bin: FAKE_DOCKER_BIN, image: "debian:bookworm-slim", env: fake.env, ...extra });
}

function row(extra: Partial<WorkspaceRow> = {}): WorkspaceRow {
  const now = new Date();
  return {
    id: randomUUID(),
    orgId: randomUUID(),
    name: "ws",
    runtime: "hermes",
    tier: 2,
    status: "provisioning",
    provider: "docker",
    instanceId: null,
    error: null,
    createdAt: now,
    updatedAt: now,
    readyAt: null,
    ...extra,
  };
}

function recorder() {
  const ids: string[] = [];
  return { ids, ctx: { recordInstanceId: async (id: string) => void ids.push(id) } };
}

const nameOf = (ws: WorkspaceRow) => `ws-${ws.id.slice(0, 12)}`;
const term = (ws: WorkspaceRow, sessionId = randomUUID()) => ({ sessionId, workspaceId: ws.id, orgId: ws.orgId, instanceId: null, cols: 80, rows: 24 });

async function failure(p: Promise<unknown>): Promise<Error> {
  const err = await p.then(
    () => null,
    (e: unknown) => e as Error,
  );
  if (!err) throw new Error("expected a failure");
  return err;
}

describe("docker provider: create", () => {
  it("pulls the image and runs one labelled container per workspace with exactly this argv, recording its id", async () => {
    const ws = row();
    const r = recorder();
    const res = await provider().create(ws, r.ctx);
    const name = nameOf(ws);
    const c = fake.container(name)!;
    expect(c.status).toBe("running");
    expect(res.instanceId).toBe(c.id);
    expect(c.id).toMatch(/^[0-9a-f]{64}$/);
    expect(r.ids).toEqual([c.id]);
    expect(fake.calls()).toEqual([
      ["inspect", "--type", "container", name],
      ["network", "inspect", "molecule-workspaces"],
      [
        "network", "create", "--driver", "bridge",
        "-o", "com.docker.network.bridge.enable_icc=false", "-o", "com.docker.network.bridge.name=molecule-ws0",
        "--label", "molecule.network=workspaces", "molecule-workspaces",
      ],
      ["network", "inspect", "molecule-workspaces"],
      ["image", "inspect", "--format", "{{.Id}}", "debian:bookworm-slim"],
      ["pull", "--quiet", "debian:bookworm-slim"],
      [
        "run", "-d", "--name", name,
        "--label", `molecule.workspace=${ws.id}`, "--label", `molecule.org=${ws.orgId}`,
        "--hostname", name, "-e", `MOLECULE_WS_ID=${ws.id}`,
        "--init", "--restart", "unless-stopped",
        "--network", "molecule-workspaces",
        "--security-opt", "no-new-privileges",
        "--cap-drop", "NET_RAW", "--cap-drop", "MKNOD", "--cap-drop", "AUDIT_WRITE",
        "--pids-limit", "512", "--memory", "2g", "--memory-swap", "2g", "--cpus", "2",
        "debian:bookworm-slim", "sleep", "infinity",
      ],
      ["inspect", "--type", "container", name],
    ]);
    expect(c.labels).toEqual({ "molecule.workspace": ws.id, "molecule.org": ws.orgId });
    expect(c.env).toContain(`MOLECULE_WS_ID=${ws.id}`);
  });

  it("is idempotent: adopts the running container, starts a stopped one, never runs a second", async () => {
    const ws = row();
    const p = provider();
    const first = await p.create(ws, recorder().ctx);
    const again = await p.create(ws, recorder().ctx);
    expect(again.instanceId).toBe(first.instanceId);

    expect(fake.docker("stop", nameOf(ws)).status).toBe(0);
    expect(fake.container(nameOf(ws))!.status).toBe("exited");
    const r = recorder();
    const restarted = await p.create(ws, r.ctx);
    expect(restarted.instanceId).toBe(first.instanceId);
    expect(r.ids).toEqual([first.instanceId]);
    expect(fake.container(nameOf(ws))!.status).toBe("running");
    expect(fake.callsOf("run")).toHaveLength(1);
    expect(fake.callsOf("start")).toEqual([["start", nameOf(ws)]]);
    // The image was there already for the later attempts: pulled once.
    expect(fake.callsOf("pull")).toHaveLength(1);
  });

  it("takes the runtime's image, the tier's limits and the configured network", async () => {
    const p = provider({
      image: "registry.example:5000/molecule/workspace-{runtime}:1",
      images: { "claude-code": "ghcr.io/acme/claude-code@sha256:" + "a".repeat(64) },
      limits: { 3: { cpus: "3", memory: "4g" }, 1: { memory: "512m" } },
      defaultLimits: { cpus: "1.5", memory: "1g" },
      pidsLimit: 256,
      network: "acme-workspaces",
    });
    const a = row({ runtime: "claude-code", tier: 3 });
    const b = row({ runtime: "crewai", tier: 1 });
    const c = row({ runtime: "crewai", tier: 4 });
    for (const ws of [a, b, c]) await p.create(ws, recorder().ctx);
    const [runA, runB, runC] = fake.callsOf("run");
    const tail = (memory: string, cpus: string, image: string) => [
      "--network", "acme-workspaces", "--security-opt", "no-new-privileges",
      "--cap-drop", "NET_RAW", "--cap-drop", "MKNOD", "--cap-drop", "AUDIT_WRITE",
      "--pids-limit", "256", "--memory", memory, "--memory-swap", memory, "--cpus", cpus, image, "sleep", "infinity",
    ];
    expect(runA!.slice(-21)).toEqual(tail("4g", "3", "ghcr.io/acme/claude-code@sha256:" + "a".repeat(64)));
    // What a tier does not set, and tiers not listed, take the defaults: never unlimited.
    expect(runB!.slice(-21)).toEqual(tail("512m", "1.5", "registry.example:5000/molecule/workspace-crewai:1"));
    expect(runC!.slice(-21)).toEqual(tail("1g", "1.5", "registry.example:5000/molecule/workspace-crewai:1"));
    // A network of another name is made the same way, with a bridge name docker picks.
    expect(fake.callsOf("network", "create")).toEqual([
      ["network", "create", "--driver", "bridge", "-o", "com.docker.network.bridge.enable_icc=false", "--label", "molecule.network=workspaces", "acme-workspaces"],
    ]);
  });

  it("never gives a container the host: no mount, socket, privilege, host namespace, added capability, device or host entry", async () => {
    const forbidden =
      /^(?:-v|--volume|--mount|--volumes-from|--privileged|--pid|--ipc|--uts|--userns|--cgroupns|--cap-add|--device|--add-host|--dns|--net|--group-add|--runtime|-u|--user)(?:=.*)?$|^--(?:network|security-opt)=/;
    const configs: Partial<DockerProviderOptions>[] = [{}, { egress: false, network: "closed-ws" }, { limits: { 1: { cpus: "4", memory: "8g" } } }];
    for (const extra of configs) {
      const p = provider(extra);
      for (const tier of [1, 2, 3, 4]) {
        const ws = row({ tier });
        await p.create(ws, recorder().ctx);
        const cmd = await p.terminalCommand(term(ws));
        for (const argv of [fake.callsOf("run").at(-1)!, cmd.args]) {
          expect(argv.filter((a) => forbidden.test(a)), argv.join(" ")).toEqual([]);
          // Host paths never reach an argv (a -v could hide in a value otherwise).
          expect(argv.filter((a) => /^\/|:\//.test(a) && a !== "/bin/bash")).toEqual([]);
        }
        const run = fake.callsOf("run").at(-1)!;
        for (const flag of ["--network", "--security-opt", "--pids-limit", "--memory", "--memory-swap", "--cpus"]) expect(run, flag).toContain(flag);
        expect(run[run.indexOf("--security-opt") + 1]).toBe("no-new-privileges");
        expect(run[run.indexOf("--network") + 1]).toBe(extra.network ?? "molecule-workspaces");
        // The container got what the argv said (the fake keeps it as the daemon would).
        expect(fake.container(nameOf(ws))!.hostConfig).toMatchObject({
          network: [extra.network ?? "molecule-workspaces"],
          "security-opt": ["no-new-privileges"],
          "cap-drop": ["NET_RAW", "MKNOD", "AUDIT_WRITE"],
          "pids-limit": ["512"],
        });
      }
    }
    // The docker calls besides run and the Terminal: fixed argv with checked ids only.
    for (const c of fake.calls()) expect(c.filter((a) => forbidden.test(a)), c.join(" ")).toEqual([]);
  });

  it("makes the workspace network once: a bridge with inter-container traffic off, --internal without egress", async () => {
    const p = provider();
    await p.create(row(), recorder().ctx);
    await p.create(row(), recorder().ctx);
    expect(fake.callsOf("network", "create")).toHaveLength(1);
    expect(fake.network("molecule-workspaces")).toMatchObject({
      Driver: "bridge",
      Internal: false,
      Options: { "com.docker.network.bridge.enable_icc": "false", "com.docker.network.bridge.name": "molecule-ws0" },
    });
    await provider({ egress: false, network: "closed-ws" }).create(row(), recorder().ctx);
    expect(fake.callsOf("network", "create").at(-1)).toContain("--internal");
    expect(fake.network("closed-ws")).toMatchObject({ Driver: "bridge", Internal: true, Options: { "com.docker.network.bridge.enable_icc": "false" } });
    // Both workspaces of the first network are on it, nothing else.
    expect(Object.values(fake.network("molecule-workspaces")!.Containers).map((c) => c.Name)).toHaveLength(2);
  });

  it("two workers making the network at once: the one that loses adopts the other's", async () => {
    fake.set("network-create-race", true);
    const ws = row();
    await provider().create(ws, recorder().ctx);
    expect(fake.callsOf("network", "create")).toHaveLength(1);
    expect(fake.container(nameOf(ws))!.hostConfig.network).toEqual(["molecule-workspaces"]);
  });

  it("refuses a network the platform is on, or one where workspaces reach each other, and runs nothing", async () => {
    fake.list("missing-images", []);
    // The compose project's network with the platform's Redis on it.
    fake.docker("network", "create", "--label", "com.docker.compose.network=default", "--label", "com.docker.compose.project=molecule", "-o", "com.docker.network.bridge.enable_icc=false", "molecule_default");
    fake.docker("pull", "redis:7");
    expect(fake.docker("run", "-d", "--name", "molecule-redis-1", "--network", "molecule_default", "redis:7").status).toBe(0);
    // An operator's network with inter-container traffic on; one with the API attached later.
    fake.docker("network", "create", "open-ws");
    fake.docker("network", "create", "-o", "com.docker.network.bridge.enable_icc=false", "shared-ws");
    const cases: [Partial<DockerProviderOptions>, RegExp][] = [
      [{ network: "molecule_default" }, /is the compose network "default" of project "molecule"/],
      [{ network: "open-ws" }, /containers on it can reach each other/],
      [{ network: "shared-ws", egress: false }, /MOLECULE_DOCKER_EGRESS is off but the network is not --internal/],
    ];
    for (const [extra, why] of cases) {
      const err = (await failure(provider(extra).create(row(), recorder().ctx))) as ProviderError;
      expect(err).toBeInstanceOf(ProviderError);
      expect(err).toMatchObject({ transient: false, code: "docker_network" });
      expect(err.message).toMatch(why);
      expect(err.message).toMatch(/MOLECULE_DOCKER_NETWORK/);
    }
    expect(fake.callsOf("run", "-d", "--name", "molecule-redis-1")).toHaveLength(1);
    expect(fake.callsOf("run")).toHaveLength(1);

    // Checked on every provisioning: a platform container connected later stops new workspaces.
    await provider({ network: "shared-ws" }).create(row(), recorder().ctx);
    fake.docker("pull", "molecule-api:local");
    fake.docker("run", "-d", "--name", "molecule-api-1", "--network", "shared-ws", "molecule-api:local");
    const later = (await failure(provider({ network: "shared-ws" }).create(row(), recorder().ctx))) as ProviderError;
    expect(later.message).toMatch(/containers that are not workspaces are on it \(molecule-api-1\)/);

    for (const network of ["host", "bridge", "none"]) expect(() => provider({ network }), network).toThrow(/workspaces need a network of their own/);
  });

  it("a container from before the workspace network gets no shell, and provisioning replaces it", async () => {
    const ws = row();
    fake.docker("pull", "debian:bookworm-slim");
    fake.docker("run", "-d", "--name", nameOf(ws), "--label", `molecule.workspace=${ws.id}`, "debian:bookworm-slim", "sleep", "infinity");
    const p = provider();
    const err = await failure(p.terminalCommand(term(ws)));
    expect(err).toBeInstanceOf(TerminalUnavailableError);
    expect(err).toMatchObject({ reason: "not_ready", message: expect.stringMatching(/not on the workspace network molecule-workspaces; restart the workspace/) });
    const old = fake.container(nameOf(ws))!.id;
    const res = await p.create(ws, recorder().ctx);
    expect(res.instanceId).not.toBe(old);
    expect(fake.container(nameOf(ws))!.hostConfig.network).toEqual(["molecule-workspaces"]);
    expect((await p.terminalCommand(term(ws))).args.at(-1)).toBe("/bin/bash");
  });

  it("refuses to adopt a container of that name that belongs to another workspace", async () => {
    const ws = row();
    fake.docker("run", "-d", "--name", nameOf(ws), "--label", "molecule.workspace=someone-else", "debian:bookworm-slim", "sleep", "infinity");
    const err = await failure(provider().create(ws, recorder().ctx));
    expect(err).toBeInstanceOf(ProviderError);
    expect((err as ProviderError).transient).toBe(false);
    expect(err.message).toMatch(new RegExp(`container named ${nameOf(ws)} exists but does not belong to this workspace`));
    expect(fake.callsOf("run")).toHaveLength(1);
  });
});

describe("docker provider: validation before any docker call", () => {
  const bad = ["../etc", "ws-1; rm -rf /", "--privileged", "0E5AD8C2-1C3B-4B4B-9F6E-0123456789AB", "", "00000000-0000-0000-0000-000000000000"];

  it.each(bad)("refuses workspace id %j in create, destroy and terminalCommand", async (id) => {
    const p = provider();
    for (const op of [p.create(row({ id }), recorder().ctx), p.destroy(row({ id })), p.terminalCommand(term(row({ id })))]) {
      const err = await failure(op);
      expect(err).toBeInstanceOf(ProviderError);
      expect(err.message).toMatch(/invalid workspace id/);
    }
    expect(fake.calls()).toEqual([]);
  });

  it("refuses a bad org id and a bad session id", async () => {
    const p = provider();
    expect((await failure(p.create(row({ orgId: "acme --privileged" }), recorder().ctx))).message).toMatch(/invalid org id/);
    expect((await failure(p.terminalCommand({ ...term(row()), sessionId: "x -e EVIL=1" }))).message).toMatch(/invalid session id/);
    expect(fake.calls()).toEqual([]);
  });

  it("refuses bad images, networks and CLI paths when configured", () => {
    for (const image of ["-v /:/host", "debian;rm -rf /", "Debian:12", "debian:bookworm slim", "debian:-x", "debian@sha256:abc", "$(id)", ""]) {
      expect(() => provider({ image }), image).toThrow(/not a docker image reference/);
    }
    expect(() => provider({ images: { hermes: "--entrypoint=sh" } })).toThrow(/not a docker image reference/);
    expect(() => provider({ network: "--privileged" })).toThrow(/invalid docker network/);
    expect(() => provider({ network: "container:ws-1" })).toThrow(/invalid docker network/);
    expect(() => provider({ pidsLimit: 0 })).toThrow(/invalid pids limit/);
    expect(() => provider({ defaultLimits: { memory: "1tb" } })).toThrow(/invalid default memory size/);
    expect(() => provider({ defaultLimits: { cpus: "0" } })).toThrow(/invalid default CPU count/);
    expect(() => provider({ bin: "docker; id" })).toThrow(/invalid docker CLI path/);
  });

  it("the worker's docker settings: a network of their own, egress on, limits for every tier by default", () => {
    const env = workerEnvSchema.parse({});
    expect(env).toMatchObject({
      MOLECULE_DOCKER_NETWORK: "molecule-workspaces",
      MOLECULE_DOCKER_EGRESS: true,
      MOLECULE_DOCKER_CPUS: "2",
      MOLECULE_DOCKER_MEMORY: "2g",
      MOLECULE_DOCKER_PIDS_LIMIT: 512,
    });
    expect(workerEnvSchema.parse({ MOLECULE_DOCKER_EGRESS: "false", MOLECULE_DOCKER_MEMORY: "4G", MOLECULE_DOCKER_PIDS_LIMIT: "1024" })).toMatchObject({
      MOLECULE_DOCKER_EGRESS: false,
      MOLECULE_DOCKER_MEMORY: "4g",
      MOLECULE_DOCKER_PIDS_LIMIT: 1024,
    });
    for (const bad of [{ MOLECULE_DOCKER_CPUS: "0" }, { MOLECULE_DOCKER_CPUS: "two" }, { MOLECULE_DOCKER_MEMORY: "1tb" }, { MOLECULE_DOCKER_PIDS_LIMIT: "8" }, { MOLECULE_DOCKER_NETWORK: "-x" }]) {
      expect(workerEnvSchema.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
    }
  });

  it("accepts the image references people use", () => {
    for (const ref of [
      "debian:bookworm-slim",
      "ubuntu",
      "library/ubuntu:24.04",
      "ghcr.io/acme/team/image:1.2.3",
      "localhost:5000/x/y",
      "public.ecr.aws/molecule-ai/workspace-hermes:latest",
      `alpine@sha256:${"0".repeat(64)}`,
      "my_registry.example/a__b/c-d:v1_2",
    ]) {
      expect(IMAGE_REF_RE.test(ref), ref).toBe(true);
    }
  });

  it("parses the runtime image map and tier limits, naming what is wrong", () => {
    expect(parseRuntimeImages(" hermes=debian:bookworm-slim , crewai=ghcr.io/a/b:1 ")).toEqual({ hermes: "debian:bookworm-slim", crewai: "ghcr.io/a/b:1" });
    expect(parseRuntimeImages("")).toEqual({});
    expect(() => parseRuntimeImages("nope=debian")).toThrow(/unknown runtime "nope"/);
    expect(() => parseRuntimeImages("hermes")).toThrow(/is not runtime=image/);
    expect(() => parseRuntimeImages("hermes=a;b")).toThrow(/not a docker image reference/);
    expect(parseTierLimits("1=1:1g,2=2:4G,3=:8g,4=0.5:")).toEqual({ 1: { cpus: "1", memory: "1g" }, 2: { cpus: "2", memory: "4g" }, 3: { memory: "8g" }, 4: { cpus: "0.5" } });
    expect(() => parseTierLimits("5=1:1g")).toThrow(/tier=cpus:memory/);
    expect(() => parseTierLimits("1=-1:1g")).toThrow(/not a CPU count/);
    expect(() => parseTierLimits("1=1:1tb")).toThrow(/not a memory size/);
  });
});

describe("docker provider: errors", () => {
  it("no docker CLI: permanent, says how to install or point at it", async () => {
    for (const p of [provider({ bin: "/nonexistent/docker" }), provider({ bin: "docker", env: { PATH: "/nonexistent" } })]) {
      const err = (await failure(p.create(row(), recorder().ctx))) as ProviderError;
      expect(err).toBeInstanceOf(ProviderError);
      expect(err.transient).toBe(false);
      expect(err.code).toBe("docker_missing");
      expect(err.message).toMatch(/docker CLI ".*docker" is not installed on the terminal worker.*MOLECULE_DOCKER_BIN.*docs\/deployment\.md/);
    }
  });

  it("daemon unreachable: transient (retried), names the daemon and what to do", async () => {
    fake.set("daemon-down", true);
    const err = (await failure(provider().create(row(), recorder().ctx))) as ProviderError;
    expect(err.transient).toBe(true);
    expect(err.code).toBe("docker_unreachable");
    expect(err.message).toMatch(/Docker daemon is not reachable.*Cannot connect to the Docker daemon at unix:\/\/\/var\/run\/docker\.sock.*docker\.sock/);
    expect((await failure(provider().destroy(row()))) as ProviderError).toMatchObject({ transient: true, code: "docker_unreachable" });
  });

  it.skipIf(!realDocker)("the real docker CLI against a socket nobody listens on is classified the same way", async () => {
    const p = provider({ bin: realDocker!, env: { PATH: SYSTEM_PATH, HOME: fake.state, DOCKER_HOST: `unix://${fake.state}/nobody.sock` } });
    const err = (await failure(p.create(row(), recorder().ctx))) as ProviderError;
    expect(err).toMatchObject({ transient: true, code: "docker_unreachable" });
    expect(err.message).toContain(`Cannot connect to the Docker daemon at unix://${fake.state}/nobody.sock`);
    const t = await failure(p.terminalCommand(term(row())));
    expect(t).not.toBeInstanceOf(TerminalUnavailableError);
    expect(t.message).toMatch(/Docker daemon is not reachable/);
  });

  it("an image the registry does not have: permanent, with the image name; nothing is run", async () => {
    fake.list("missing-images", ["registry.example/nope:1"]);
    const err = (await failure(provider({ image: "registry.example/nope:1" }).create(row(), recorder().ctx))) as ProviderError;
    expect(err).toMatchObject({ transient: false, code: "docker_image" });
    expect(err.message).toMatch(/cannot pull the workspace image registry\.example\/nope:1: .*manifest for registry\.example\/nope:1 not found/);
    expect(fake.callsOf("run")).toEqual([]);
  });

  it("a docker call that hangs is killed at the timeout and retried", async () => {
    fake.set("hang", true);
    const t0 = performance.now();
    const err = (await failure(provider({ timeoutMs: 300 }).create(row(), recorder().ctx))) as ProviderError;
    expect(err).toMatchObject({ transient: true, code: "docker_timeout" });
    expect(performance.now() - t0).toBeLessThan(3000);
  });

  it("classifies what docker prints", () => {
    const e = (stderr: string, code: number | string = 1) => new DockerCliError(["x"], code, stderr, false);
    expect(classifyDockerError(e("permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: Get ...: dial unix /var/run/docker.sock: connect: permission denied"))).toBe("permission");
    expect(classifyDockerError(e('docker: Error response from daemon: Conflict. The container name "/ws-1" is already in use by container "abc".', 125))).toBe("name_conflict");
    expect(classifyDockerError(e("Error response from daemon: No such image: x:latest"))).toBe("not_found");
    expect(classifyDockerError(e("Error: No such object: ws-1"))).toBe("not_found");
    expect(classifyDockerError(e("Error response from daemon: container 3f2a is not running"))).toBe("not_running");
    expect(classifyDockerError(e("", "ENOENT"))).toBe("missing_cli");
    expect(classifyDockerError(new DockerCliError(["x"], null, "", true))).toBe("timeout");
    expect(pullProviderError(e("Error response from daemon: toomanyrequests: You have reached your pull rate limit."), "debian:12", "docker")).toMatchObject({ transient: true });
    expect(pullProviderError(e("Error response from daemon: pull access denied for nope, repository does not exist or may require 'docker login'"), "nope:1", "docker")).toMatchObject({ transient: false });
  });
});

describe("docker provider: destroy and restart", () => {
  it("destroy removes the container; a missing one is fine", async () => {
    const ws = row();
    const p = provider();
    await p.create(ws, recorder().ctx);
    await p.destroy(ws);
    expect(fake.container(nameOf(ws))).toBeNull();
    await p.destroy(ws);
    expect(fake.callsOf("rm")).toEqual([["rm", "-f", nameOf(ws)], ["rm", "-f", nameOf(ws)]]);
  });

  it("restart recreates the container and records the new id", async () => {
    const ws = row();
    const p = provider();
    const first = await p.create(ws, recorder().ctx);
    const r = recorder();
    const second = await p.restart!(ws, r.ctx);
    expect(second.instanceId).not.toBe(first.instanceId);
    expect(fake.container(nameOf(ws))!.id).toBe(second.instanceId);
    expect(r.ids).toEqual([second.instanceId]);
    expect(fake.callsOf("run")).toHaveLength(2);
  });
});

describe("docker provider: terminal command", () => {
  it("is docker exec -it with the session's variables, and audits the container", async () => {
    const ws = row();
    const p = provider();
    const { instanceId } = await p.create(ws, recorder().ctx);
    const sid = randomUUID();
    const cmd = await p.terminalCommand(term(ws, sid));
    expect(cmd.file).toBe(FAKE_DOCKER_BIN);
    expect(cmd.args).toEqual(["exec", "-it", "-e", "TERM=xterm-256color", "-e", `MOLECULE_WS_ID=${ws.id}`, "-e", `MOLECULE_SESSION_ID=${sid}`, nameOf(ws), "/bin/bash"]);
    // The CLI's environment only: nothing else of the worker's.
    expect(cmd.env).toEqual(fake.env);
    expect(cmd.audit).toEqual({ instanceId, osUser: "root" });
  });

  it("a missing or stopped container is not_ready; daemon trouble is not", async () => {
    const ws = row();
    const p = provider();
    const missing = await failure(p.terminalCommand(term(ws)));
    expect(missing).toBeInstanceOf(TerminalUnavailableError);
    expect(missing).toMatchObject({ reason: "not_ready", message: expect.stringMatching(/does not exist/) });
    await p.create(ws, recorder().ctx);
    fake.docker("stop", nameOf(ws));
    const stopped = await failure(p.terminalCommand(term(ws)));
    expect(stopped).toMatchObject({ reason: "not_ready", message: expect.stringMatching(/is exited; restart the workspace/) });
    fake.set("daemon-down", true);
    const down = await failure(p.terminalCommand(term(ws)));
    expect(down).not.toBeInstanceOf(TerminalUnavailableError);
    expect(down.message).toMatch(/Docker daemon is not reachable/);
  });

  it("an image without bash gets /bin/sh, found with one probe per container", async () => {
    fake.list("no-bash-images", ["alpine:3.20"]);
    const p = provider({ image: "alpine:3.20" });
    const ws = row();
    await p.create(ws, recorder().ctx);
    expect((await p.terminalCommand(term(ws))).args.at(-1)).toBe("/bin/sh");
    expect((await p.terminalCommand(term(ws))).args.at(-1)).toBe("/bin/sh");
    expect(fake.callsOf("exec", nameOf(ws), "/bin/sh", "-c", "test -x /bin/bash")).toHaveLength(1);
    const withBash = row();
    await provider().create(withBash, recorder().ctx);
    expect((await p.terminalCommand(term(withBash))).args.at(-1)).toBe("/bin/bash");
  });

  it("explains an exec that never started the shell", () => {
    const d = (tail: string, code = 1, ranMs = 300) => diagnoseDockerExit({ code, tail: Buffer.from(tail), ranMs }, "ws-1", "/bin/bash");
    expect(d("Error response from daemon: No such container: ws-1\r\n")).toMatchObject({ reason: "not_ready" });
    expect(d("Error response from daemon: container 0123abcd is not running\r\n")).toMatchObject({ reason: "not_ready" });
    expect(d('OCI runtime exec failed: exec failed: unable to start container process: exec: "/bin/bash": stat /bin/bash: no such file or directory: unknown', 127)).toMatchObject({
      reason: "not_ready",
      message: "the workspace image has no /bin/bash",
    });
    expect(d("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")).toMatchObject({ reason: "not_ready" });
    // A shell that ran and exited with an error is a plain exit.
    expect(d("Error response from daemon: No such container: ws-1", 1, 60_000)).toBeNull();
    expect(d("bash: foo: command not found\r\n", 127)).toBeNull();
    expect(d("", 0)).toBeNull();
  });

  describe("cleanup hangs up what the session left in the container", () => {
    const procs: ChildProcess[] = [];
    afterEach(() => {
      for (const c of procs.splice(0)) c.kill("SIGKILL");
    });
    // The fake runs the hang-up script on this host, so host processes stand in for the container's.
    function proc(env: Record<string, string>, nohup = false): ChildProcess {
      const c = spawn(nohup ? "nohup" : "sleep", nohup ? ["sleep", "60"] : ["60"], { env: { PATH: SYSTEM_PATH, ...env }, stdio: "ignore" });
      procs.push(c);
      return c;
    }

    it("SIGHUP to every process of the session; other sessions and nohup jobs live on", async () => {
      const ws = row();
      const p = provider();
      await p.create(ws, recorder().ctx);
      const sid = randomUUID();
      const cmd: ShellCommand = await p.terminalCommand(term(ws, sid));
      const mine = [proc({ MOLECULE_SESSION_ID: sid }), proc({ A: "1", MOLECULE_SESSION_ID: sid, B: "2" })];
      const other = proc({ MOLECULE_SESSION_ID: randomUUID() });
      const prefix = proc({ MOLECULE_SESSION_ID: `${sid}0` });
      const kept = proc({ MOLECULE_SESSION_ID: sid }, true);
      const exited = Promise.all(mine.map((c) => new Promise((r) => c.once("exit", (_code, signal) => r(signal)))));
      await cmd.cleanup!();
      expect(await exited).toEqual(["SIGHUP", "SIGHUP"]);
      for (const c of [other, prefix, kept]) expect(processAlive(c.pid!)).toBe(true);
      const call = fake.callsOf("exec", nameOf(ws), "/bin/sh", "-c");
      expect(call.at(-1)!.slice(-2)).toEqual(["molecule-hangup", sid]);
      // A container that is gone by then is nothing to clean.
      await p.destroy(ws);
      await cmd.cleanup!();
    });
  });
});
