/**
 * The fake docker CLI (bin/docker) and its state directory: what a test needs to
 * arrange daemon trouble, inspect the containers it made and read the argv of every call.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const FAKE_DOCKER_BIN = fileURLToPath(new URL("./bin/docker", import.meta.url));
export const FAKE_DOCKER_DIR = fileURLToPath(new URL("./bin", import.meta.url));
export const SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

export interface FakeContainer {
  id: string;
  status: string;
  image: string;
  labels: Record<string, string>;
  env: string[];
  /** What `run` gave it beyond the basics: network, security-opt, cap-drop, pids-limit, memory, memory-swap, cpus. */
  hostConfig: Record<string, string[]>;
}

export interface FakeNetwork {
  Name: string;
  Driver: string;
  Internal: boolean;
  Options: Record<string, string>;
  Labels: Record<string, string>;
  Containers: Record<string, { Name: string }>;
}

export class FakeDocker {
  readonly state = mkdtempSync(join(tmpdir(), "molecule-fake-docker-"));
  /** Environment of the docker CLI as the provider would get it. */
  readonly env: Record<string, string> = { PATH: `${FAKE_DOCKER_DIR}:${SYSTEM_PATH}`, HOME: tmpdir(), FAKE_DOCKER_STATE: this.state };

  /** Every call so far, as argv arrays (without the executable). */
  calls(): string[][] {
    const f = join(this.state, "calls");
    if (!existsSync(f)) return [];
    return readFileSync(f, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => l.split("\x1f"));
  }

  /** Calls whose first arguments are `prefix`. */
  callsOf(...prefix: string[]): string[][] {
    return this.calls().filter((c) => prefix.every((p, i) => c[i] === p));
  }

  container(name: string): FakeContainer | null {
    const d = join(this.state, "containers", name);
    if (!existsSync(d)) return null;
    const read = (f: string) => readFileSync(join(d, f), "utf8").trim();
    const labels: Record<string, string> = {};
    for (const l of read("labels").split("\n").filter(Boolean)) {
      const i = l.indexOf("=");
      labels[l.slice(0, i)] = l.slice(i + 1);
    }
    const hostConfig: Record<string, string[]> = {};
    for (const l of read("hostconfig").split("\n").filter(Boolean)) {
      const i = l.indexOf("=");
      (hostConfig[l.slice(0, i)] ??= []).push(l.slice(i + 1));
    }
    return { id: read("id"), status: read("status"), image: read("image"), labels, env: read("env").split("\n"), hostConfig };
  }

  /** A network as `docker network inspect` reports it, or null. */
  network(name: string): FakeNetwork | null {
    const r = this.docker("network", "inspect", name);
    return r.status === 0 ? ((JSON.parse(r.stdout) as FakeNetwork[])[0] ?? null) : null;
  }

  /** Runs the fake CLI directly (as an operator would run docker by hand). */
  docker(...args: string[]): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync(FAKE_DOCKER_BIN, args, { env: this.env, encoding: "utf8", timeout: 10_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /** A switch file: daemon-down, hang, network-create-race (another worker made the network first). */
  set(flag: "daemon-down" | "hang" | "network-create-race", on: boolean): void {
    const f = join(this.state, flag);
    if (on) writeFileSync(f, "");
    else rmSync(f, { force: true });
  }

  list(which: "missing-images" | "no-bash-images", images: string[]): void {
    writeFileSync(join(this.state, which), images.map((i) => `${i}\n`).join(""));
  }

  /** Shells started by `exec` (pids). */
  execPids(): number[] {
    const f = join(this.state, "exec-pids");
    return existsSync(f) ? readFileSync(f, "utf8").split("\n").filter(Boolean).map(Number) : [];
  }

  close(): void {
    rmSync(this.state, { recursive: true, force: true });
  }
}
