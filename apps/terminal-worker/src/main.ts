import * as pty from "node-pty";
import { createDb, createLogger, createRedis, createWriterFor, handleShutdownSignals, migrateDatabase, redisTarget, workerConnectionName } from "@molecule/shared";
import { dockerOptionsFromEnv, localOptionsFromEnv, workerConfigFromEnv } from "./config.ts";
import { awsChildEnv, loadWorkerEnv } from "./env.ts";
import { createWorkerMetrics, serveMetrics } from "./metrics.ts";
import { awsOptionsFromEnv, bwrapAvailable, createDockerProvider, createLocalProvider, loadAwsProvider } from "./providers/index.ts";
import { createWorker } from "./worker.ts";
import { createRecordingStore, recordingConfigFromEnv } from "@molecule/shared/recording/settings";

const env = loadWorkerEnv();
const log = createLogger("terminal-worker", env.LOG_LEVEL).child({ worker_id: env.MOLECULE_WORKER_ID });

await migrateDatabase(env.DATABASE_URL);
const db = createDb(env.DATABASE_URL);
// Named, so API nodes can tell a stalled worker from a dead one (workerConnectionName).
const named = (role: "cmd" | "sub" | "out") => workerConnectionName(env.MOLECULE_REDIS_PREFIX, env.MOLECULE_WORKER_ID, role);
// REDIS_CLUSTER_NODES, when set, makes these Redis Cluster connections (config.ts).
const target = redisTarget(env);
const redis = createRedis(target, { connectionName: named("cmd") });
const sub = createRedis(target, { connectionName: named("sub") });
const writer = createWriterFor(target, { name: named("out"), log });
for (const [name, r] of [["redis", redis], ["redis-sub", sub]] as const) {
  r.on("error", (err) => log.warn({ err, conn: name }, "redis connection error"));
}

const local = createLocalProvider(localOptionsFromEnv(env, log.child({ provider: "local" })));
if (env.MOLECULE_SANDBOX_BWRAP === "on" && !bwrapAvailable()) {
  log.error("bubblewrap is not usable: local workspaces get no shell (install bubblewrap; MOLECULE_SANDBOX_BWRAP=off runs shells unisolated, for a single-user machine only)");
} else if (env.MOLECULE_SANDBOX_BWRAP !== "off" && !bwrapAvailable()) {
  log.warn("bubblewrap is not usable: local shells run as plain child processes of this worker, with no tenant boundary");
} else if (env.MOLECULE_SANDBOX_BWRAP === "off") {
  log.warn("MOLECULE_SANDBOX_BWRAP=off: local shells run as plain child processes of this worker, with no tenant boundary");
}

// Containers on this worker's Docker daemon; nothing runs until a docker workspace is provisioned.
const docker = createDockerProvider(dockerOptionsFromEnv(env, log.child({ provider: "docker" })));

// Controlplane backend (MOLECULE_ORG_ID + AWS settings): EC2 workspaces, Terminal through EIC.
const awsOptions = awsOptionsFromEnv(env, awsChildEnv(), log.child({ provider: "aws" }));
const aws = awsOptions ? await loadAwsProvider(awsOptions) : null;
if (awsOptions) log.info({ region: awsOptions.region, org_id: awsOptions.orgId }, "aws provider enabled (controlplane backend)");

const metrics = createWorkerMetrics(env.MOLECULE_WORKER_ID);
const recordingConfig = recordingConfigFromEnv(env);
const recording = recordingConfig ? { store: await createRecordingStore(recordingConfig.store), maxBytes: recordingConfig.maxBytes } : undefined;
const worker = createWorker({
  config: workerConfigFromEnv(env),
  db,
  redis,
  sub,
  writer,
  log,
  providers: aws ? { local, docker, aws } : { local, docker },
  spawn: pty.spawn as never,
  metrics,
  ...(recording ? { recording } : {}),
});
await worker.start();
const metricsServer = env.MOLECULE_METRICS_PORT > 0 ? await serveMetrics(metrics.registry, env.MOLECULE_METRICS_PORT, env.MOLECULE_METRICS_HOST) : null;
log.info({ capacity: env.MOLECULE_WORKER_CAPACITY, metrics_port: env.MOLECULE_METRICS_PORT || null }, "terminal-worker ready");
process.stdout.write(
  `${JSON.stringify({ event: "ready", worker_id: env.MOLECULE_WORKER_ID, pid: process.pid, ...(metricsServer ? { metrics_port: env.MOLECULE_METRICS_PORT } : {}) })}\n`,
);

handleShutdownSignals({
  log,
  message: "shutting down: no new sessions; draining",
  hardLimitMs: env.MOLECULE_DRAIN_TIMEOUT_MS + 10_000,
  close: async () => {
    await worker.close();
    metricsServer?.close();
  },
  connections: [() => db.close(), () => redis.quit(), () => sub.quit(), () => writer.close()],
});
