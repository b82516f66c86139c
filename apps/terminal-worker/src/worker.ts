import type { Redis } from "ioredis";
import { createHub, withByteScripts, type DbHandle, type Logger } from "@molecule/shared";
import type { ProviderRegistry } from "./providers/index.ts";
import { createProvisioningWorker } from "./provisioning.ts";
import { createTerminalRunner } from "./terminal/runner.ts";
import type { SpawnPty } from "./terminal/session.ts";

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
  terminal: boolean;
  provisioning: boolean;
}

export interface WorkerDeps {
  config: WorkerConfig;
  db: DbHandle;
  redis: Redis;
  sub: Redis;
  log: Logger;
  providers: ProviderRegistry;
  spawn: SpawnPty;
}

/** The terminal-worker process: provisioning jobs and terminal sessions. */
export function createWorker(deps: WorkerDeps) {
  const { config: c, log } = deps;
  const redis = withByteScripts(deps.redis);
  const hub = createHub(deps.sub, log);
  const provisioning = c.provisioning
    ? createProvisioningWorker({
        db: deps.db.db,
        redis,
        ns: c.ns,
        log,
        providers: deps.providers,
        concurrency: c.provisionConcurrency,
        lockMs: c.provisionLockMs,
        timeoutMs: c.provisionTimeoutMs,
      })
    : null;
  const terminal = c.terminal
    ? createTerminalRunner({
        redis,
        bullConnection: redis,
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
      })
    : null;

  return {
    provisioning,
    terminal,
    async start(): Promise<void> {
      await terminal?.start();
      await provisioning?.worker.waitUntilReady();
    },
    async close(): Promise<void> {
      await Promise.all([terminal?.drain(c.drainTimeoutMs), provisioning?.close()]);
    },
  };
}
export type MoleculeWorker = ReturnType<typeof createWorker>;
