import type { Cluster, Redis } from "ioredis";
import { isCluster } from "./config.ts";

/**
 * Every Redis key name in one place. `ns` is the deployment's key prefix
 * (MOLECULE_REDIS_PREFIX), so tests and a dev stack can share one Redis.
 *
 * Per-session keys share the hash tag `{<sessionId>}` so one Lua script can touch
 * them all on Redis Cluster; BullMQ's keys live under the hash-tagged prefix `{ns}`.
 */
export function bullPrefix(ns: string): string {
  return `{${ns}}`;
}

export interface SessionKeys {
  /** Stream of output chunks, the replay window: the entry format is in output-log.ts (appendChunk). */
  log: string;
  /** Live output + worker events channel (worker -> API). */
  out: string;
  /** Input + control channel (API -> worker). */
  in: string;
  /** Hash: workspace, org, worker, cols, rows, state, piped, end (final event JSON). */
  meta: string;
  /** Reason the session was cancelled, set by whichever side ends it. */
  cancel: string;
  /** Present while an API node holds the client's socket (refreshed with a TTL). */
  viewer: string;
  /** Hash: the clients attached (controller and viewers, field = connection id, value = JSON), for presence. */
  attached: string;
  /** Channel: the attached set changed (API -> API). */
  presence: string;
}

export function sessionKeys(ns: string, sessionId: string): SessionKeys {
  const base = `${ns}:term:{${sessionId}}`;
  return {
    log: `${base}:log`,
    out: `${base}:out`,
    in: `${base}:in`,
    meta: `${base}:meta`,
    cancel: `${base}:cancel`,
    viewer: `${base}:viewer`,
    attached: `${base}:attached`,
    presence: `${base}:presence`,
  };
}

/**
 * An API node's liveness key while it holds terminal sessions (presence.ts): a node that died
 * stops refreshing it, and the presence entries it left are no longer shown.
 */
export function apiNodeAliveKey(ns: string, nodeId: string): string {
  return `${ns}:api:${nodeId}:alive`;
}

/** A terminal worker's liveness key, refreshed every second with a short TTL. */
export function workerAliveKey(ns: string, workerId: string): string {
  return `${ns}:worker:${workerId}:alive`;
}

/**
 * The name (CLIENT SETNAME) of each Redis connection of a terminal worker. The
 * kernel closes them the moment the worker's process dies, so an API node can
 * tell a worker whose heartbeat is late (starved of CPU) from a dead one.
 */
export function workerConnectionName(ns: string, workerId: string, role: "cmd" | "sub" | "out"): string {
  return `${ns}:worker:${workerId}:${role}`;
}

/** Whether any named connection of this worker is open; null when Redis will not say (CLIENT LIST refused). */
export async function workerConnected(redis: Pick<Redis, "client">, ns: string, workerId: string): Promise<boolean | null> {
  const list = await clientList(redis);
  return list === null ? null : workerConnectedIn(list, ns, workerId);
}

/** CLIENT LIST (of every primary, on a cluster: a worker's connections are spread over them), or null when Redis refuses it. */
export async function clientList(redis: Pick<Redis, "client">): Promise<string | null> {
  if (isCluster(redis)) {
    const lists = await Promise.all((redis as unknown as Cluster).nodes("master").map((n) => clientList(n)));
    const answered = lists.filter((l): l is string => l !== null);
    return answered.length ? answered.join("\n") : null;
  }
  try {
    return (await redis.client("LIST")) as string;
  } catch {
    return null;
  }
}

/** `workerConnected` against a CLIENT LIST already read (one read for many workers). */
export function workerConnectedIn(list: string, ns: string, workerId: string): boolean {
  return list.includes(` name=${ns}:worker:${workerId}:`);
}

/**
 * Hash of audit closes PostgreSQL refused (field = session id, value = the close as JSON):
 * kept until applied, by the worker's retries or an API node's sweeper (audit-outbox.ts).
 */
export function auditOutboxKey(ns: string): string {
  return `${ns}:audit:outbox`;
}

export function ticketKey(ns: string, ticketHash: string): string {
  return `${ns}:ticket:${ticketHash}`;
}

/** A subject's accepted requests of one kind (a sorted set: lua/rate-limit.lua). */
export function rateLimitKey(ns: string, what: string, subject: string): string {
  return `${ns}:rl:${what}:${subject}`;
}

/** Pattern that matches every key of a namespace (tests clean up with it). */
export function namespacePatterns(ns: string): string[] {
  return [`${ns}:*`, `${bullPrefix(ns)}:*`];
}

/** Deletes every key matching any of `patterns` (SCAN + UNLINK, never KEYS): tests and the benchmark clean up with it. */
export async function deleteKeysMatching(redis: Redis, patterns: string[]): Promise<void> {
  if (isCluster(redis)) {
    // SCAN walks one node: each primary in turn, each key deleted on its own slot.
    for (const node of (redis as unknown as Cluster).nodes("master")) {
      for (const pattern of patterns) {
        let cursor = "0";
        do {
          const [next, keys] = await node.scan(cursor, "MATCH", pattern, "COUNT", 1000);
          cursor = next;
          for (const k of keys) await node.unlink(k);
        } while (cursor !== "0");
      }
    }
    return;
  }
  for (const pattern of patterns) {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      cursor = next;
      if (keys.length) await redis.unlink(...keys);
    } while (cursor !== "0");
  }
}
