import * as pty from "node-pty";
import { createDb, createLogger, createRedis, createRedisWriter, migrateDatabase, workerConnectionName } from "@molecule/shared";
import { awsChildEnv, dockerChildEnv, loadWorkerEnv } from "./env.ts";
import { createWorkerMetrics, serveMetrics } from "./metrics.ts";
import { awsOptionsFromEnv, bwrapAvailable, createDockerProvider, createLocalProvider, loadAwsProvider } from "./providers/index.ts";
import { defaultBlockedCidrs, egressArgv, egressAvailable } from "./providers/sandbox-egress.ts";
import { createWorker } from "./worker.ts";

const env = loadWorkerEnv();
const log = createLogger("terminal-worker", env.LOG_LEVEL).child({ worker_id: env.MOLECULE_WORKER_ID });

await migrateDatabase(env.DATABASE_URL);
const db = createDb(env.DATABASE_URL);
// Named, so API nodes can tell a stalled worker from a dead one (workerConnectionName).
const named = (role: "cmd" | "sub" | "out") => workerConnectionName(env.MOLECULE_REDIS_PREFIX, env.MOLECULE_WORKER_ID, role);
const redis = createRedis(env.REDIS_URL, { connectionName: named("cmd") });
const sub = createRedis(env.REDIS_URL, { connectionName: named("sub") });
const writer = createRedisWriter({ url: env.REDIS_URL, name: named("out"), log });
for (const [name, r] of [["redis", redis], ["redis-sub", sub]] as const) {
  r.on("error", (err) => log.warn({ err, conn: name }, "redis connection error"));
}

const local = createLocalProvider({
  root: env.MOLECULE_SANDBOX_ROOT,
  bwrap: env.MOLECULE_SANDBOX_BWRAP,
  shell: env.MOLECULE_SHELL,
  user: env.USER,
  provisionDelayMs: env.MOLECULE_LOCAL_PROVISION_DELAY_MS,
  network: env.MOLECULE_SANDBOX_NETWORK,
  // Egress only where pasta can start: without it the provider refuses to start rather than run shells offline.
  egressWrap:
    env.MOLECULE_SANDBOX_NETWORK === "egress" && egressAvailable(env.MOLECULE_SANDBOX_UID_BASE)
      ? (argv: string[]) => egressArgv(argv, { blocked: defaultBlockedCidrs() })
      : undefined,
  uids: { base: env.MOLECULE_SANDBOX_UID_BASE, count: env.MOLECULE_SANDBOX_UID_COUNT },
  limits: { pids: env.MOLECULE_SANDBOX_PIDS, memoryBytes: env.MOLECULE_SANDBOX_MEMORY, cpuShares: env.MOLECULE_SANDBOX_CPU_SHARES, fileSizeBytes: env.MOLECULE_SANDBOX_FILE_SIZE },
  log: log.child({ provider: "local" }),
});
if (env.MOLECULE_SANDBOX_BWRAP === "on" && !bwrapAvailable()) {
  log.error("bubblewrap is not usable: local workspaces get no shell (install bubblewrap; MOLECULE_SANDBOX_BWRAP=off runs shells unisolated, for a single-user machine only)");
} else if (env.MOLECULE_SANDBOX_BWRAP !== "off" && !bwrapAvailable()) {
  log.warn("bubblewrap is not usable: local shells run as plain child processes of this worker, with no tenant boundary");
} else if (env.MOLECULE_SANDBOX_BWRAP === "off") {
  log.warn("MOLECULE_SANDBOX_BWRAP=off: local shells run as plain child processes of this worker, with no tenant boundary");
}

// Containers on this worker's Docker daemon; nothing runs until a docker workspace is provisioned.
const docker = createDockerProvider({
  bin: env.MOLECULE_DOCKER_BIN,
  image: env.MOLECULE_DOCKER_IMAGE,
  images: env.MOLECULE_DOCKER_IMAGES,
  network: env.MOLECULE_DOCKER_NETWORK,
  egress: env.MOLECULE_DOCKER_EGRESS,
  limits: env.MOLECULE_DOCKER_LIMITS,
  defaultLimits: { cpus: env.MOLECULE_DOCKER_CPUS, memory: env.MOLECULE_DOCKER_MEMORY },
  pidsLimit: env.MOLECULE_DOCKER_PIDS_LIMIT,
  env: dockerChildEnv(),
  log: log.child({ provider: "docker" }),
});

// Controlplane backend (MOLECULE_ORG_ID + AWS settings): EC2 workspaces, Terminal through EIC.
const awsOptions = awsOptionsFromEnv(env, awsChildEnv(), log.child({ provider: "aws" }));
const aws = awsOptions ? await loadAwsProvider(awsOptions) : null;
if (awsOptions) log.info({ region: awsOptions.region, org_id: awsOptions.orgId }, "aws provider enabled (controlplane backend)");

const metrics = createWorkerMetrics(env.MOLECULE_WORKER_ID);
const worker = createWorker({
  config: {
    ns: env.MOLECULE_REDIS_PREFIX,
    workerId: env.MOLECULE_WORKER_ID,
    capacity: env.MOLECULE_WORKER_CAPACITY,
    provisionConcurrency: env.MOLECULE_PROVISION_CONCURRENCY,
    provisionLockMs: env.MOLECULE_PROVISION_LOCK_MS,
    provisionTimeoutMs: env.MOLECULE_PROVISION_TIMEOUT_MS,
    replayWindowBytes: env.MOLECULE_REPLAY_WINDOW_BYTES,
    orphanGraceMs: env.MOLECULE_ORPHAN_GRACE_MS,
    idleTimeoutMs: env.MOLECULE_IDLE_TIMEOUT_MS,
    maxSessionMs: env.MOLECULE_MAX_SESSION_MS,
    drainTimeoutMs: env.MOLECULE_DRAIN_TIMEOUT_MS,
    terminal: env.MOLECULE_TERMINAL_ENABLED,
    provisioning: env.MOLECULE_PROVISIONING_ENABLED,
  },
  db,
  redis,
  sub,
  writer,
  log,
  providers: aws ? { local, docker, aws } : { local, docker },
  spawn: pty.spawn as never,
  metrics,
});
await worker.start();
const metricsServer = env.MOLECULE_METRICS_PORT > 0 ? await serveMetrics(metrics.registry, env.MOLECULE_METRICS_PORT, env.MOLECULE_METRICS_HOST) : null;
log.info({ capacity: env.MOLECULE_WORKER_CAPACITY, metrics_port: env.MOLECULE_METRICS_PORT || null }, "terminal-worker ready");
process.stdout.write(
  `${JSON.stringify({ event: "ready", worker_id: env.MOLECULE_WORKER_ID, pid: process.pid, ...(metricsServer ? { metrics_port: env.MOLECULE_METRICS_PORT } : {}) })}\n`,
);

let stopping = false;
async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ signal, drain_ms: env.MOLECULE_DRAIN_TIMEOUT_MS }, "shutting down: no new sessions; draining");
  const hard = setTimeout(() => process.exit(1), env.MOLECULE_DRAIN_TIMEOUT_MS + 10_000);
  hard.unref();
  await worker.close().catch((err) => log.error({ err }, "close failed"));
  metricsServer?.close();
  await Promise.allSettled([db.close(), redis.quit(), sub.quit(), writer.close()]);
  process.exit(0);
}
process.on("SIGTERM", () => void stop("SIGTERM"));
process.on("SIGINT", () => void stop("SIGINT"));
