import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { PROVISION_QUEUE, TERMINAL_QUEUE, bullPrefix, createHub, queueConnection, type DbHandle, type Logger, type RedisWriter } from "@molecule/shared";
import type { RecordingStore } from "@molecule/shared/recording/index";
import type { WorkerMetrics } from "./metrics.ts";
import type { ProviderRegistry } from "./providers/index.ts";
import { createProvisioningWorker } from "./provisioning.ts";
import { createTerminalRunner } from "./terminal/runner.ts";
import type { SpawnPty } from "./terminal/types.ts";

export interface WorkerConfig {
  ns: string;
  workerId: string;
  capacity: number;
  provisionConcurrency: number;
  provisionLockMs: number;
  provisionTimeoutMs: number;
  replayWindowBytes: number;
  orphanGraceMs: number;
  idleTimeoutMs: number;
  maxSessionMs: number;
  drainTimeoutMs: number;
  /** Spare shells (terminal/spare-shells.ts): at most this many per worker (0: none), each kept this long unused. */
  spareShells: number;
  spareShellIdleMs: number;
  terminal: boolean;
  provisioning: boolean;
}

export interface WorkerDeps {
  config: WorkerConfig;
  db: DbHandle;
  redis: Redis;
  sub: Redis;
  /** Output appends (CLIENT REPLY OFF, appendChunk). */
  writer: RedisWriter;
  log: Logger;
  providers: ProviderRegistry;
  spawn: SpawnPty;
  metrics?: WorkerMetrics;
  /** Session recording; absent, sessions are not recorded. */
  recording?: { store: RecordingStore; maxBytes: number };
  /** The wall clock provisioning timeouts are judged by (default Date.now): tests drive it. */
  now?: () => number;
}

/** The terminal-worker process: provisioning jobs and terminal sessions. */
export function createWorker(deps: WorkerDeps) {
  const { config: c, log } = deps;
  const redis = deps.redis;
  // The queues' own connection (queueConnection says why), owned and closed here.
  const queueRedis = queueConnection(redis, (err) => log.warn({ err }, "redis (queues) connection error"));
  const hub = createHub(deps.sub, log);
  const provisioning = c.provisioning
    ? createProvisioningWorker({
        db: deps.db.db,
        redis: queueRedis,
        ns: c.ns,
        log,
        providers: deps.providers,
        concurrency: c.provisionConcurrency,
        lockMs: c.provisionLockMs,
        timeoutMs: c.provisionTimeoutMs,
        metrics: deps.metrics,
        ...(deps.now ? { now: deps.now } : {}),
      })
    : null;
  const terminal = c.terminal
    ? createTerminalRunner({
        redis,
        writer: deps.writer,
        bullConnection: queueRedis,
        hub,
        db: deps.db.db,
        ns: c.ns,
        workerId: c.workerId,
        log,
        providers: deps.providers,
        spawn: deps.spawn,
        capacity: c.capacity,
        replayWindowBytes: c.replayWindowBytes,
        orphanGraceMs: c.orphanGraceMs,
        idleTimeoutMs: c.idleTimeoutMs,
        maxSessionMs: c.maxSessionMs,
        spareShells: { max: c.spareShells, idleMs: c.spareShellIdleMs },
        metrics: deps.metrics,
        ...(deps.recording ? { recording: deps.recording } : {}),
      })
    : null;
  // Queue depth for the metrics, read when Prometheus scrapes.
  const queues = deps.metrics ? [PROVISION_QUEUE, TERMINAL_QUEUE].map((n) => new Queue(n, { connection: queueRedis, prefix: bullPrefix(c.ns) })) : [];
  deps.metrics?.sources({
    active: () => terminal?.sessions.size ?? 0,
    queues: async () => Object.fromEntries(await Promise.all(queues.map(async (q) => [q.name, await q.getJobCounts()] as const))),
  });

  return {
    provisioning,
    terminal,
    async start(): Promise<void> {
      await terminal?.start();
      await provisioning?.worker.waitUntilReady();
    },
    async close(): Promise<void> {
      await Promise.all([terminal?.drain(c.drainTimeoutMs), provisioning?.close(), ...queues.map((q) => q.close())]);
      await queueRedis.quit().catch((err: unknown) => log.debug({ err }, "closing the queues' Redis connection failed"));
    },
  };
}
export type MoleculeWorker = ReturnType<typeof createWorker>;
