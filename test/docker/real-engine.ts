/**
 * The real Docker Engine for the tests that need it (test/docker/real-docker.test.ts,
 * test/compose-deploy.test.ts): Debian's /usr/bin/docker (20.10, BuildKit without buildx),
 * the images deploy/local-images builds (cached by the hash of their inputs). Without an
 * engine these tests skip, except under CI=true, where they fail: .ci/run starts dockerd.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../../scripts/processes.ts";

export const DOCKER = process.env.MOLECULE_TEST_DOCKER ?? (existsSync("/usr/bin/docker") ? "/usr/bin/docker" : "docker");
/** The CLI's environment: /usr/bin first (Debian's docker, not a docker that wants buildx), BuildKit on. */
export const DOCKER_ENV: Record<string, string> = {
  PATH: `/usr/bin:/bin:/usr/sbin:/sbin:${process.env.PATH ?? ""}`,
  HOME: process.env.HOME ?? "/root",
  DOCKER_BUILDKIT: "1",
  COMPOSE_DOCKER_CLI_BUILD: "1",
};

export function docker(args: string[], o: { timeoutMs?: number; input?: string } = {}) {
  const r = spawnSync(DOCKER, args, { env: DOCKER_ENV, encoding: "utf8", timeout: o.timeoutMs ?? 60_000, input: o.input });
  return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? String(r.error ?? "") };
}

/** Why the engine cannot be used, or null when it can. */
function engineProblem(): string | null {
  const r = docker(["info", "--format", "{{.ServerVersion}}"], { timeoutMs: 20_000 });
  return r.status === 0 && r.stdout.trim() ? null : `docker info failed: ${(r.stderr || r.stdout).trim().split("\n")[0]}`;
}

const problem = engineProblem();
if (problem && process.env.CI === "true") {
  // CI must prove the Docker path: a run that could not is a failure, never a skip.
  throw new Error(`CI=true and the Docker Engine is not usable (${problem}); .ci/run starts dockerd`);
}
/** True when the engine answers (else the Docker tests skip, outside CI). */
export const engineUp = problem === null;

export interface LocalImages {
  NODE_IMAGE: string;
  DEBIAN_IMAGE: string;
  POSTGRES_IMAGE: string;
  REDIS_IMAGE: string;
  HAPROXY_IMAGE: string;
  MOLECULE_DOCKER_IMAGE: string;
}

/** The tag of the app images the tests build: never `local`, an operator's own build. */
export const TEST_TAG = "mtest";

/** The stand-in base images (built once; later runs find them by their hash tags). */
export function localImages(o: { app?: boolean } = {}): LocalImages {
  const r = spawnSync(join(ROOT, "deploy/local-images"), ["--print", ...(o.app ? [] : ["--no-app"])], {
    cwd: ROOT,
    env: { ...DOCKER_ENV, DOCKER, MOLECULE_TAG: TEST_TAG },
    encoding: "utf8",
    timeout: 25 * 60_000,
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`deploy/local-images failed (${r.status}): ${r.stderr}`);
  const out: Record<string, string> = {};
  for (const line of r.stdout.split("\n")) {
    const m = /^([A-Z_]+)=(\S+)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  for (const k of ["NODE_IMAGE", "DEBIAN_IMAGE", "POSTGRES_IMAGE", "REDIS_IMAGE", "HAPROXY_IMAGE", "MOLECULE_DOCKER_IMAGE"]) {
    if (!out[k]) throw new Error(`deploy/local-images printed no ${k}: ${r.stdout}`);
  }
  return out as unknown as LocalImages;
}

/** The address of a container on a network. */
export function ipOf(container: string, network: string): string {
  const r = docker(["inspect", "--format", `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, container]);
  if (r.status !== 0 || !/^\d+\.\d+\.\d+\.\d+$/.test(r.stdout.trim())) throw new Error(`no address of ${container} on ${network}: ${r.stderr}${r.stdout}`);
  return r.stdout.trim();
}

/**
 * Whether `container` can open a TCP connection to host:port (bash's /dev/tcp, bounded by
 * `timeout`): "open", "refused" or "blocked" (no answer: dropped by the firewall).
 */
export function tcpFrom(container: string, host: string, port: number): "open" | "refused" | "blocked" {
  const r = docker(["exec", container, "timeout", "3", "bash", "-c", `exec 3<>/dev/tcp/${host}/${port} && echo open`], { timeoutMs: 20_000 });
  if (r.stdout.includes("open")) return "open";
  if (r.status === 124) return "blocked";
  return /refused/i.test(r.stderr) ? "refused" : "blocked";
}

/** A one-line TCP listener in perl (perl-base is in every Debian image) answering "hello". */
export const LISTENER = [
  "perl", "-MIO::Socket::INET", "-e",
  'my $s = IO::Socket::INET->new(LocalPort => $ARGV[0], Listen => 5, ReuseAddr => 1) or die $!; while (my $c = $s->accept) { print $c "hello\\n"; close $c }',
];
