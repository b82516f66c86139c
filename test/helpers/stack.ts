import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pty from "node-pty";
import { createDb, createLogger, createRedis, createWriterFor, dropDatabase, redisTarget, workerConnectionName, migrateDatabase, type DbHandle } from "@molecule/shared";
import { createApi, type ApiConfig } from "../../apps/api/src/app.ts";
import { apiConfigFromEnv } from "../../apps/api/src/config.ts";
import { loadApiEnv } from "../../apps/api/src/env.ts";
import { workerConfigFromEnv } from "../../apps/terminal-worker/src/config.ts";
import { loadWorkerEnv } from "../../apps/terminal-worker/src/env.ts";
import { createOrg } from "../../apps/api/src/orgs.ts";
import { createLocalProvider, type LocalProviderOptions, type ProviderRegistry } from "../../apps/terminal-worker/src/providers/index.ts";
import { createWorker, type WorkerConfig } from "../../apps/terminal-worker/src/worker.ts";
import type { RecordingStore } from "@molecule/shared/recording/index";
import { testUrls, uniqueNs } from "./env.ts";

export interface StackOptions {
  /**
   * A database of this stack's own (created, migrated, dropped on close) instead of the run's
   * shared one: for stacks whose sweepers would touch other tests' rows (short timeouts).
   */
  ownDatabase?: boolean;
  api?: Partial<ApiConfig>;
  worker?: Partial<WorkerConfig> | false;
  /** The worker's wall clock (provisioning timeouts), default Date.now. */
  workerClock?: () => number;
  local?: Partial<LocalProviderOptions>;
  /** More providers for the worker next to `local` (e.g. aws pointed at local fakes). */
  providers?: ProviderRegistry;
  redisUrl?: string;
  /** REDIS_CLUSTER_NODES: the stack on a Redis Cluster (test/cluster-redis/harness.ts) instead of `redisUrl`. */
  redisClusterNodes?: string;
  /** REDIS_SHARD_LOST_MS with a cluster (default 30 s). */
  shardLostMs?: number;
  /** Session recording: the store the worker writes and the API serves (default: none, nothing recorded). */
  recording?: { store: RecordingStore; maxBytes?: number };
}

/** API and worker built in this process through their factories, on real Redis and PostgreSQL. */
export async function startStack(o: StackOptions = {}) {
  let { databaseUrl } = testUrls();
  if (o.ownDatabase) {
    const u = new URL(databaseUrl);
    u.pathname = `${u.pathname}_${Math.random().toString(36).slice(2, 8)}`;
    databaseUrl = u.toString();
    await migrateDatabase(databaseUrl);
  }
  const redisUrl = o.redisUrl ?? testUrls().redisUrl;
  const target = redisTarget({ REDIS_URL: redisUrl, REDIS_CLUSTER_NODES: o.redisClusterNodes, ...(o.shardLostMs ? { REDIS_SHARD_LOST_MS: o.shardLostMs } : {}) });
  const ns = o.api?.ns ?? uniqueNs();
  const log = createLogger("test", process.env.TEST_LOG_LEVEL ?? "silent");
  const db: DbHandle = createDb(databaseUrl, { max: 5 });
  const workerId = `w-${ns}`;
  const conns = [
    createRedis(target),
    createRedis(target),
    createRedis(target, { connectionName: workerConnectionName(ns, workerId, "cmd") }),
    createRedis(target, { connectionName: workerConnectionName(ns, workerId, "sub") }),
  ];
  for (const c of conns) c.on("error", () => {});
  // Connected before anything subscribes or publishes through them.
  await Promise.all(conns.map((c) => c.ping()));
  const [apiRedis, apiSub, wRedis, wSub] = conns as [ReturnType<typeof createRedis>, ReturnType<typeof createRedis>, ReturnType<typeof createRedis>, ReturnType<typeof createRedis>];
  const apiWriter = createWriterFor(target, { name: `api-${ns}:in`, log });
  const workerWriter = createWriterFor(target, { name: workerConnectionName(ns, workerId, "out"), log });
  const sandboxRoot = mkdtempSync(join(tmpdir(), "molecule-sbx-"));
  const apiConfig = (nodeId: string) => ({
    // The deployment's defaults (one mapping: apiConfigFromEnv), then what tests need.
    ...apiConfigFromEnv(loadApiEnv({})),
    ns,
    nodeId,
    provider: "local" as const,
    createRatePerMin: 1000,
    claimTimeoutMs: 5000,
    ...o.api,
  });
  const recording = o.recording ? { recording: o.recording.store } : {};
  const api = createApi({
    config: apiConfig(`api-${ns}`),
    db,
    redis: apiRedis,
    sub: apiSub,
    writer: apiWriter,
    log,
    ...recording,
  });
  const port = await api.listen(0, "127.0.0.1");
  const local = createLocalProvider({ root: sandboxRoot, bwrap: "on", shell: "/bin/bash", ...o.local });
  const worker =
    o.worker === false
      ? null
      : createWorker({
          config: {
            ...workerConfigFromEnv(loadWorkerEnv({})),
            ns,
            workerId,
            capacity: 250,
            provisionLockMs: 5000,
            provisionTimeoutMs: 60_000,
            maxSessionMs: 3600_000,
            drainTimeoutMs: 0,
            ...o.worker,
          },
          db,
          redis: wRedis,
          sub: wSub,
          writer: workerWriter,
          log,
          providers: { local, ...o.providers },
          spawn: pty.spawn as never,
          ...(o.recording ? { recording: { store: o.recording.store, maxBytes: o.recording.maxBytes ?? 64 * 1024 * 1024 } } : {}),
          ...(o.workerClock ? { now: o.workerClock } : {}),
        });
  await worker?.start();
  const url = `http://127.0.0.1:${port}`;
  const extraApis: { close(): Promise<void> }[] = [];
  /** Another API node of this stack (same namespace, Redis and database; its own connections). */
  async function addApi(): Promise<{ url: string; wsUrl: string; api: ReturnType<typeof createApi>; close(): Promise<void> }> {
    const n = extraApis.length + 1;
    const cs = [createRedis(target), createRedis(target)] as const;
    for (const c of cs) c.on("error", () => {});
    await Promise.all(cs.map((c) => c.ping()));
    const w = createWriterFor(target, { name: `api-${ns}-${n}:in`, log });
    const extra = createApi({ config: apiConfig(`api-${ns}-${n}`), db, redis: cs[0], sub: cs[1], writer: w, log, ...recording });
    const p = await extra.listen(0, "127.0.0.1");
    const handle = {
      url: `http://127.0.0.1:${p}`,
      wsUrl: `ws://127.0.0.1:${p}`,
      api: extra,
      async close() {
        await extra.close().catch(() => {});
        for (const c of cs) c.disconnect();
        await w.close();
      },
    };
    extraApis.push(handle);
    return handle;
  }
  return {
    addApi,
    ns,
    url,
    wsUrl: url.replace(/^http/, "ws"),
    db,
    api,
    worker,
    workerId,
    sandboxRoot,
    redis: apiRedis,
    /** The API node's subscriber connection (tests take it away and bring it back). */
    apiSub,
    async org(name = "org") {
      return createOrg(db.db, `${name}-${ns}`);
    },
    async close() {
      for (const a of extraApis) await a.close();
      await api.close().catch(() => {});
      await worker?.close().catch(() => {});
      local.sweepCgroups(); // the shells are gone: their workspaces' cgroups too
      for (const c of conns) c.disconnect();
      await Promise.all([apiWriter.close(), workerWriter.close()]);
      await db.close();
      if (o.ownDatabase) await dropDatabase(databaseUrl).catch(() => {});
      rmSync(sandboxRoot, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    },
  };
}
export type Stack = Awaited<ReturnType<typeof startStack>>;
