import { Cluster, Redis, type RedisOptions } from "ioredis";
import { z } from "zod";

function protocolOf(url: string): string {
  try {
    return new URL(url).protocol;
  } catch {
    return "";
  }
}

/** Settings both apps read. Each app's own src/env.ts extends this and is the only reader of process.env. */
export const baseEnvSchema = z.object({
  /** Credentials go in the URL (`postgres://user:password@host/db`); URL-encode special characters. */
  DATABASE_URL: z
    .string()
    .url()
    .refine((u) => /^postgres(ql)?:$/.test(protocolOf(u)), "must be a postgres:// or postgresql:// URL")
    .default("postgres://postgres@127.0.0.1:5432/molecule"),
  /** `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS; a password alone authenticates as `default`. */
  REDIS_URL: z
    .string()
    .url()
    .refine((u) => /^rediss?:$/.test(protocolOf(u)), "must be a redis:// or rediss:// URL")
    .default("redis://127.0.0.1:6379"),
  /**
   * Redis Cluster seed nodes, `host:port,host:port,…` (or `redis[s]://[user:password@]host:port` entries):
   * selects cluster mode and takes precedence over REDIS_URL, whose credentials and TLS (`rediss://`)
   * apply to every node unless the entries carry their own.
   */
  REDIS_CLUSTER_NODES: z
    .string()
    .optional()
    .refine((v) => v === undefined || v.trim() === "" || parseClusterNodes(v) !== null, "must be host:port[,host:port…] (or redis[s]:// URLs)"),
  /**
   * Cluster mode: a session whose shard (primary and replicas) has been unreachable this long
   * ends with `store_unavailable`. Keep it above cluster-node-timeout plus a failover's
   * election, or an ordinary failover would end sessions it should only delay.
   */
  REDIS_SHARD_LOST_MS: z.coerce.number().int().min(500).default(30_000),
  /** Key prefix in Redis: one per deployment (or test run) sharing a Redis. */
  MOLECULE_REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).default("molecule"),
  MOLECULE_PROVIDER: z.enum(["local", "docker", "aws"]).default("local"),
  LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
});
export type BaseEnv = z.infer<typeof baseEnvSchema>;

export const boolish = z
  .union([z.boolean(), z.string()])
  .transform((v) => (typeof v === "boolean" ? v : !["0", "false", "no", "off", ""].includes(v.toLowerCase())));

/** Parses an env object, turning zod issues into one readable startup error. */
export function parseEnv<T extends z.ZodType>(schema: T, env: Record<string, string | undefined>): z.infer<T> {
  const r = schema.safeParse(env);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new Error(`invalid configuration:\n${lines.join("\n")}`);
  }
  return r.data;
}

const NODE = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/;

export interface ClusterNode {
  host: string;
  port: number;
}

/** `host:port,…` or redis[s]:// URL entries; null when any entry is malformed. */
export function parseClusterNodes(v: string): { nodes: ClusterNode[]; url: string | null } | null {
  const nodes: ClusterNode[] = [];
  let url: string | null = null;
  for (const raw of v.split(",").map((e) => e.trim()).filter(Boolean)) {
    if (/^rediss?:\/\//.test(raw)) {
      let u: URL;
      try {
        u = new URL(raw);
      } catch {
        return null;
      }
      const port = Number(u.port || 6379);
      if (!u.hostname || !Number.isInteger(port) || port < 1 || port > 65535) return null;
      nodes.push({ host: u.hostname.replace(/^\[|\]$/g, ""), port });
      // The first entry with credentials (or TLS) speaks for all: one deployment, one set of credentials.
      if (url === null && (u.username || u.password || u.protocol === "rediss:")) url = raw;
      continue;
    }
    const m = NODE.exec(raw);
    const port = Number(m?.[3]);
    if (!m || port < 1 || port > 65535) return null;
    nodes.push({ host: m[1] ?? m[2]!, port });
  }
  return nodes.length ? { nodes, url } : null;
}

/**
 * Where Redis is: one server (`url`), or a Redis Cluster (`cluster`: seed nodes,
 * with `url` giving the credentials and TLS). Built from the environment by `redisTarget`.
 */
export interface RedisTarget {
  url: string;
  cluster: ClusterNode[] | null;
  /** REDIS_SHARD_LOST_MS (cluster mode). */
  shardLostMs?: number;
}

export function redisTarget(env: Pick<BaseEnv, "REDIS_URL" | "REDIS_CLUSTER_NODES"> & { REDIS_SHARD_LOST_MS?: number }): RedisTarget {
  const parsed = env.REDIS_CLUSTER_NODES?.trim() ? parseClusterNodes(env.REDIS_CLUSTER_NODES) : null;
  if (!parsed) return { url: env.REDIS_URL, cluster: null };
  return { url: parsed.url ?? env.REDIS_URL, cluster: parsed.nodes, shardLostMs: env.REDIS_SHARD_LOST_MS ?? 30_000 };
}

/** What createRedis was told about a cluster connection, for the hub made from it. */
const clusterSettings = new WeakMap<object, { shardLostMs: number }>();
export function shardLostMsOf(cluster: object): number {
  return clusterSettings.get(cluster)?.shardLostMs ?? 30_000;
}

/** What a target's URL says about credentials, database and TLS (the host and port of a cluster's URL are not used). */
export function connectionSettings(url: string): { username?: string; password?: string; db: number; tls?: { servername: string } } {
  const u = new URL(url);
  const username = decodeURIComponent(u.username);
  const password = decodeURIComponent(u.password);
  return {
    ...(username ? { username } : {}),
    ...(password ? { password } : {}),
    db: Number(u.pathname.replace(/^\//, "") || 0),
    ...(u.protocol === "rediss:" ? { tls: { servername: u.hostname.replace(/^\[|\]$/g, "") } } : {}),
  };
}

/** Whether a connection (or a pipeline/MULTI made from one) talks to a Redis Cluster. */
export function isCluster(r: unknown): boolean {
  return typeof r === "object" && r !== null && (r as { isCluster?: unknown }).isCluster === true;
}

/**
 * BullMQ needs maxRetriesPerRequest null on its connections; we use it everywhere so commands wait out a Redis restart.
 *
 * With a cluster target the connection is an ioredis Cluster. It is typed as Redis:
 * it offers the same commands, and the few places where a cluster differs
 * (CLIENT LIST, SCAN, pub/sub) check `isCluster`.
 */
export function createRedis(target: string | RedisTarget, opts: RedisOptions = {}): Redis {
  const t = typeof target === "string" ? { url: target, cluster: null } : target;
  const base: RedisOptions = {
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    retryStrategy: (n) => Math.min(50 * n, 1000),
    ...opts,
  };
  if (!t.cluster) return new Redis(t.url, base);
  const { db: _db, tls, ...creds } = connectionSettings(t.url);
  const cluster = new Cluster(t.cluster, {
    redisOptions: { ...base, ...creds, ...(tls ? { tls } : {}) },
    // Commands wait out a failover (a replica promoted) or a resharding rather than failing.
    maxRedirections: 64,
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 200,
    retryDelayOnTryAgain: 50,
    clusterRetryStrategy: (n) => Math.min(100 * n, 2000),
    enableReadyCheck: true,
    slotsRefreshTimeout: 2000,
    // A topology change is also noticed without a redirect (a shard that went away entirely).
    slotsRefreshInterval: 2000,
  });
  clusterSettings.set(cluster, { shardLostMs: t.shardLostMs ?? 30_000 });
  return cluster as unknown as Redis;
}

/**
 * A connection of its own for BullMQ, beside `redis`: BullMQ defines its ~40 Lua scripts on the
 * connection it is given, and ioredis copies every defined script onto each pipeline or MULTI made
 * on that connection (~0.5 ms each, several per terminal open). The caller owns and closes it.
 */
export function queueConnection(redis: Redis, onError: (err: Error) => void): Redis {
  const q = redis.duplicate();
  q.on("error", onError);
  return q;
}

/** The URL with its password replaced by `***`: the only form of a data-service URL that may be logged or printed. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparsable URL)";
  }
}

/**
 * Connects once with the URL's credentials and runs PING: resolves when Redis
 * accepts them, rejects with what Redis answered (WRONGPASS, NOAUTH, NOPERM) or
 * why it could not connect, naming the URL without its password. Start-up
 * calls this so wrong credentials stop a process at once rather than leaving it
 * retrying in the background.
 */
export async function verifyRedis(target: string | RedisTarget, timeoutMs = 3000): Promise<void> {
  if (typeof target !== "string" && target.cluster) {
    // Each seed with the target's credentials: a node that refuses them would fail later, one session at a time.
    const u = new URL(target.url);
    await Promise.all(
      target.cluster.map((n) => {
        const nodeUrl = new URL(u.toString());
        nodeUrl.hostname = n.host.includes(":") ? `[${n.host}]` : n.host;
        nodeUrl.port = String(n.port);
        nodeUrl.pathname = "";
        return verifyRedis(nodeUrl.toString(), timeoutMs);
      }),
    );
    return;
  }
  const url = typeof target === "string" ? target : target.url;
  let last: Error | null = null;
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: timeoutMs });
  r.on("error", (err: Error) => (last = err));
  try {
    await r.connect();
    await r.ping();
  } catch (err) {
    // ioredis reports a refused AUTH as "Connection is closed": the reason is the last error event.
    const why = (last ?? (err as Error)).message;
    const auth = /WRONGPASS|NOAUTH|NOPERM|invalid password|AUTH/i.test(why);
    throw new Error(
      auth
        ? `Redis at ${redactUrl(url)} refused the credentials: ${why} (set them in REDIS_URL: redis://user:password@host:port)`
        : `Redis at ${redactUrl(url)} is not usable: ${why}`,
    );
  } finally {
    r.disconnect();
  }
}
