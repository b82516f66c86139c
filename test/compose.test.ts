import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { composeHaproxyConfig } from "../scripts/cluster.ts";
import { ROOT } from "../scripts/processes.ts";

const COMPOSE = process.env.MOLECULE_DOCKER_COMPOSE ?? "docker-compose";
// docker-compose 1.29 wants a regular file ("/dev/null is not a file").
const EMPTY_ENV = join(mkdtempSync(join(tmpdir(), "molecule-compose-")), "empty.env");
writeFileSync(EMPTY_ENV, "");

/**
 * docker-compose in the repository root with a clean environment (no PORT etc. from this shell)
 * and none of the checkout's .env (deploy/gen-env and deploy/local-images write one there).
 */
function compose(args: string[], env: Record<string, string> = {}) {
  return spawnSync(COMPOSE, ["-f", join(ROOT, "docker-compose.yml"), "--env-file", EMPTY_ENV, ...args], {
    cwd: ROOT,
    encoding: "utf8",
    // The compose file has no default passwords (test/data-plane-credentials.test.ts): give it some.
    env: { PATH: process.env.PATH, HOME: process.env.HOME, POSTGRES_PASSWORD: "pg-test", REDIS_PASSWORD: "r-admin", REDIS_API_PASSWORD: "r-api", REDIS_WORKER_PASSWORD: "r-worker", ...env },
  });
}

/** The resolved compose model (docker-compose prints YAML; Debian's docker-compose is Python, so is its YAML parser). */
function resolved(env: Record<string, string> = {}): any {
  const r = compose(["config"], env);
  expect(r.status, r.stderr).toBe(0);
  const j = spawnSync("python3", ["-c", "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"], { input: r.stdout, encoding: "utf8" });
  expect(j.status, j.stderr).toBe(0);
  return JSON.parse(j.stdout);
}

describe("docker-compose.yml", () => {
  it("passes docker-compose config -q, and the validation really checks (a bad value fails)", () => {
    const ok = compose(["config", "-q"]);
    expect(ok.status, ok.stderr).toBe(0);
    const bad = compose(["config", "-q"], { MOLECULE_API_REPLICAS: "two" });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/replicas/);
  });

  it("has postgres, redis (AOF, noeviction), two api replicas behind the load balancer and a scalable worker, with healthchecks and restart policies", () => {
    const c = resolved();
    const s = c.services;
    expect(Object.keys(s).sort()).toEqual(["api", "lb", "postgres", "prometheus", "redis", "terminal-worker"]);
    const redisCmd = (s.redis.command as string[]).join(" ");
    expect(redisCmd).toMatch(/--appendonly yes/);
    expect(redisCmd).toMatch(/--maxmemory-policy noeviction/);
    expect(s.api.deploy.replicas).toBe(2);
    // Scalable with --scale: no fixed container name, no fixed replica count, no published host port.
    for (const k of ["container_name", "ports"]) expect(s["terminal-worker"][k]).toBeUndefined();
    expect(s["terminal-worker"].deploy?.replicas).toBeUndefined();
    expect(s.api.ports).toBeUndefined();
    // Only the load balancer is published, on loopback by default.
    expect(s.lb.ports).toEqual(["127.0.0.1:8080:8080/tcp"]);
    expect(s.lb.volumes).toEqual([`${join(ROOT, "deploy/haproxy/haproxy.cfg")}:/usr/local/etc/haproxy/haproxy.cfg:ro`]);
    for (const name of ["postgres", "redis", "api", "terminal-worker", "lb"]) {
      expect(s[name].restart, name).toBe("unless-stopped");
      expect(s[name].healthcheck?.test, name).toBeDefined();
    }
    expect(s.api.depends_on).toMatchObject({ postgres: { condition: "service_healthy" }, redis: { condition: "service_healthy" } });
    expect(s["terminal-worker"].environment).toMatchObject({ MOLECULE_METRICS_PORT: "9464", MOLECULE_SANDBOX_ROOT: "/var/lib/molecule/sandboxes" });
    expect(s.api.environment.DATABASE_URL).toBe("postgres://postgres:pg-test@postgres:5432/molecule");
    // Optional secrets are passed through only when set: never as an empty string.
    expect(s.api.environment.MOLECULE_BOOTSTRAP_TOKEN).toBeNull();
    expect(resolved({ MOLECULE_BOOTSTRAP_TOKEN: "mol_x" }).services.api.environment.MOLECULE_BOOTSTRAP_TOKEN).toBe("mol_x");
    expect(resolved({ PORT: "9000" }).services.lb.ports).toEqual(["127.0.0.1:9000:8080/tcp"]);
  });

  it("mounts the load balancer config that scripts/cluster.ts generates, and haproxy accepts it", () => {
    const file = join(ROOT, "deploy/haproxy/haproxy.cfg");
    expect(readFileSync(file, "utf8"), "regenerate: node --import tsx scripts/cluster.ts --compose-haproxy > deploy/haproxy/haproxy.cfg").toBe(
      composeHaproxyConfig(),
    );
    const cfg = readFileSync(file, "utf8");
    expect(cfg).toMatch(/balance roundrobin/);
    expect(cfg).not.toMatch(/\bcookie\b|\bstick\b|balance source/);
    expect(cfg).toMatch(/timeout tunnel 1h/);
    expect(cfg).toMatch(/http-check send meth GET uri \/readyz/);
    expect(cfg).toMatch(/option forwardfor/);
    const check = spawnSync("haproxy", ["-c", "-f", file], { encoding: "utf8" });
    expect(check.status, check.stderr + check.stdout).toBe(0);
  });

  it("builds both images from one Dockerfile whose COPY sources exist, with the worker's tools, no registry needed beyond the bases", () => {
    const text = readFileSync(join(ROOT, "Dockerfile"), "utf8");
    expect(text).toMatch(/^ARG NODE_IMAGE=node:20-bookworm-slim$/m);
    expect(text).toMatch(/^ARG PNPM_VERSION=10\.34\.9$/m);
    expect(text).toMatch(/pnpm install --frozen-lockfile/);
    const stages = new Map(text.split(/^(?=FROM )/m).slice(1).map((st) => [/^FROM \S+ AS (\S+)/.exec(st)![1]!, st]));
    expect([...stages.keys()]).toEqual(["build", "awscli", "dockercli", "runtime", "terminal-worker", "api"]);
    expect(stages.get("build")).toMatch(/^RUN node --import tsx scripts\/build\.ts$/m);
    // BuildKit's built-in frontend: a `# syntax=` line would pull a frontend image from a registry.
    expect(text).not.toMatch(/^# *syntax=/m);
    expect(text).toMatch(/^ARG DEBIAN_IMAGE=debian:bookworm-slim$/m);
    // The API runs as node; the worker as root, to drop each shell to a uid of its own.
    expect(stages.get("api")).toMatch(/^USER node$/m);
    expect(stages.get("terminal-worker")).toMatch(/^USER root$/m);
    for (const target of ["api", "terminal-worker"]) {
      expect(stages.get(target)).toMatch(/^FROM runtime AS /);
      // Compiled JavaScript (scripts/build.ts in the build stage), no tsx at run time.
      expect(stages.get(target)).toMatch(/^CMD \["node", "dist\/server\/(api|worker)\.js"\]$/m);
    }
    expect(stages.get("terminal-worker")).toMatch(/openssh-client .*bubblewrap/);
    expect(stages.get("terminal-worker")).toMatch(/COPY --from=awscli \/usr\/local\/aws-cli/);
    // The docker provider's CLI: the client binary only, from Debian's docker.io (no daemon).
    expect(stages.get("terminal-worker")).toMatch(/^COPY --from=dockercli \/usr\/bin\/docker \/usr\/bin\/docker$/m);
    expect(stages.get("awscli")).toMatch(/awscli-exe-linux-\$\{arch\}/);
    // The AWS CLI download is opt-in: the default build reaches no host but the registries'.
    expect(stages.get("awscli")).toMatch(/^ARG AWS_CLI=false$/m);
    expect(stages.get("awscli")).toMatch(/^FROM \$\{DEBIAN_IMAGE\} AS awscli/);
    // npm/pnpm get the optional CA bundle as a BuildKit secret, never as a layer.
    expect(stages.get("build")!.match(/--mount=type=secret,id=ca/g)).toHaveLength(2);
    for (const line of text.split("\n")) {
      const m = /^COPY (?!--from)(.+)$/.exec(line.trim());
      if (!m) continue;
      const parts = m[1]!.split(/\s+/).filter((p) => !p.startsWith("--"));
      for (const src of parts.slice(0, -1)) expect(existsSync(join(ROOT, src)), src).toBe(true);
    }
    const c = resolved();
    expect(c.services.api.build).toMatchObject({ context: ROOT.replace(/\/$/, ""), target: "api" });
    expect(c.services["terminal-worker"].build).toMatchObject({ context: ROOT.replace(/\/$/, ""), target: "terminal-worker" });
    // The bases are public unless deploy/local-images points them at its stand-ins.
    expect(c.services.api.build.args).toEqual({ NODE_IMAGE: "node:20-bookworm-slim", DEBIAN_IMAGE: "debian:bookworm-slim" });
    const local = resolved({ NODE_IMAGE: "molecule-local/node:1", POSTGRES_IMAGE: "molecule-local/postgres:1", REDIS_IMAGE: "molecule-local/redis:1", HAPROXY_IMAGE: "molecule-local/haproxy:1" });
    expect(local.services["terminal-worker"].build.args.NODE_IMAGE).toBe("molecule-local/node:1");
    expect([local.services.postgres.image, local.services.redis.image, local.services.lb.image]).toEqual(["molecule-local/postgres:1", "molecule-local/redis:1", "molecule-local/haproxy:1"]);
    expect([c.services.postgres.image, c.services.redis.image, c.services.lb.image]).toEqual(["postgres:16-bookworm", "redis:7-bookworm", "haproxy:2.8-alpine"]);
  });

  it("runs shells with the docker provider through the host's socket, mounted into the worker alone", () => {
    const s = resolved().services;
    expect(s.api.environment.MOLECULE_PROVIDER).toBe("docker");
    expect(s["terminal-worker"].environment).toMatchObject({ MOLECULE_PROVIDER: "docker", MOLECULE_DOCKER_BIN: "/usr/bin/docker", MOLECULE_DOCKER_NETWORK: "molecule-workspaces" });
    expect(s["terminal-worker"].volumes).toContain("/var/run/docker.sock:/var/run/docker.sock:rw");
    for (const name of ["api", "lb", "postgres", "redis"]) expect(JSON.stringify(s[name].volumes ?? []), name).not.toMatch(/docker\.sock/);
    // Nothing weakened: no privileged mode, no added capability, Docker's default seccomp/AppArmor.
    expect(s["terminal-worker"].privileged).toBeUndefined();
    expect(s["terminal-worker"].cap_add).toBeUndefined();
    expect(s["terminal-worker"].security_opt).toBeUndefined();
    expect(resolved({ DOCKER_SOCKET: "/run/user/1000/docker.sock", MOLECULE_PROVIDER: "local" }).services["terminal-worker"]).toMatchObject({
      volumes: expect.arrayContaining(["/run/user/1000/docker.sock:/var/run/docker.sock:rw"]),
      environment: expect.objectContaining({ MOLECULE_PROVIDER: "local" }),
    });
  });
});
