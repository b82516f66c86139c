import type { Redis } from "ioredis";
import { z } from "zod";
import { endReason } from "./bus-messages.ts";
import type { Db } from "./db/client.ts";
import { closeHeldSession } from "./db/terminal-sessions.ts";
import type { Logger } from "./logger.ts";
import { auditOutboxKey } from "./redis-keys.ts";

/**
 * How a session really ended, as its worker saw it: what the audit row must say.
 * `closedAt` is the end time (ms since the epoch, the worker's clock), not the
 * time the row was finally written.
 */
export const auditClose = z.object({
  sessionId: z.string().uuid(),
  workerId: z.string().regex(/^[A-Za-z0-9_.-]{1,200}$/),
  reason: endReason,
  code: z.number().int().nullable(),
  signal: z.string().max(32).nullable(),
  bytesIn: z.number().int().min(0),
  bytesOut: z.number().int().min(0),
  closedAt: z.number().int().min(0),
  /** The session's recording, complete in the store: its size goes with the close (one commit, not two). */
  recording: z.object({ bytes: z.number().int().min(0), truncated: z.boolean() }).optional(),
});
export type AuditClose = z.infer<typeof auditClose>;

type OutboxRedis = Pick<Redis, "hset" | "hdel" | "hgetall" | "hmget">;

/** Reads the entry stored for each session (null where there is none or it does not parse). */
async function readEntries(redis: OutboxRedis, ns: string, sessionIds: string[], log: Logger): Promise<(AuditClose | null)[]> {
  if (sessionIds.length === 0) return [];
  const raw = await redis.hmget(auditOutboxKey(ns), ...sessionIds);
  return raw.map((v, i) => (v === null ? null : parseEntry(sessionIds[i]!, v, log)));
}

function parseEntry(sessionId: string, v: string, log: Logger): AuditClose | null {
  const parsed = auditClose.safeParse(safeJson(v));
  if (parsed.success && parsed.data.sessionId === sessionId) return parsed.data;
  log.error({ session_id: sessionId, issues: parsed.success ? "session id mismatch" : parsed.error.issues }, "audit outbox entry is malformed: ignored");
  return null;
}

function safeJson(v: string): unknown {
  try {
    return JSON.parse(v);
  } catch {
    // Not JSON: the zod check reports it as malformed.
    return undefined;
  }
}

/**
 * For an API node's sweeper, before it records sessions as worker_lost: applies
 * the outbox entries of these sessions (a worker that ended them while PostgreSQL
 * was down and died before it could retry). Returns the ids whose rows an entry
 * closed; entries applied or with nothing left to close are removed. A database
 * error propagates (the sweep must not then write worker_lost either).
 */
export async function applyOutboxEntries(db: Db, redis: OutboxRedis, ns: string, sessionIds: string[], log: Logger): Promise<Set<string>> {
  const closed = new Set<string>();
  const entries = await readEntries(redis, ns, sessionIds, log);
  for (const rec of entries) {
    if (!rec) continue;
    if (await closeHeldSession(db, rec)) closed.add(rec.sessionId);
    log.info({ session_id: rec.sessionId, worker_id: rec.workerId, reason: rec.reason, applied: closed.has(rec.sessionId) }, "audit outbox entry applied by the sweeper");
    await redis.hdel(auditOutboxKey(ns), rec.sessionId);
  }
  return closed;
}

export interface OutboxTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface AuditOutboxOptions {
  db: Db;
  redis: OutboxRedis;
  ns: string;
  /** Entries left in Redis under this worker id (an earlier process with the same id) are taken over by recover(). */
  workerId: string;
  log: Logger;
  /** First retry after this long, doubling up to retryMaxMs while PostgreSQL keeps failing. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  timers?: OutboxTimers;
}

const realTimers: OutboxTimers = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/**
 * A worker's audit closes: written at once when PostgreSQL answers; otherwise
 * kept in memory and in a Redis hash (so they outlive the worker) and retried
 * with backoff until the database takes them.
 */
export function createAuditOutbox(o: AuditOutboxOptions) {
  const key = auditOutboxKey(o.ns);
  const base = o.retryBaseMs ?? 1000;
  const max = o.retryMaxMs ?? 30_000;
  const timers = o.timers ?? realTimers;
  const pending = new Map<string, { rec: AuditClose; stored: boolean }>();
  let delay = base;
  let timer: unknown = null;
  let stopped = false;
  let running: Promise<number> | null = null;

  async function store(e: { rec: AuditClose; stored: boolean }): Promise<void> {
    try {
      await o.redis.hset(key, e.rec.sessionId, JSON.stringify(e.rec));
      e.stored = true;
    } catch (err) {
      // Still in memory: the next retry writes it again (or applies it, if the database is back first).
      o.log.error({ err, session_id: e.rec.sessionId }, "audit outbox: could not store the close in Redis");
    }
  }

  function schedule(): void {
    if (stopped || timer !== null || pending.size === 0) return;
    timer = timers.setTimeout(() => {
      timer = null;
      void retry();
    }, delay);
  }

  async function retryOnce(): Promise<number> {
    let applied = 0;
    let failed = false;
    for (const [id, e] of [...pending]) {
      if (!e.stored) await store(e);
      try {
        // Closed now, or nothing left to close (another node applied it): done either way.
        const closedNow = await closeHeldSession(o.db, e.rec);
        pending.delete(id);
        applied++;
        o.log.info({ session_id: id, reason: e.rec.reason, closed_now: closedNow }, "audit outbox: close applied");
        await o.redis.hdel(key, id).catch((err: unknown) => o.log.warn({ err, session_id: id }, "audit outbox: applied, but the Redis entry stays (a later apply is a no-op)"));
      } catch (err) {
        // One failure says the database is still away: wait before trying the others.
        failed = true;
        o.log.warn({ err, session_id: id, pending: pending.size, retry_ms: Math.min(delay * 2, max) }, "audit outbox: PostgreSQL still refuses the close");
        break;
      }
    }
    delay = failed ? Math.min(delay * 2, max) : base;
    schedule();
    return applied;
  }

  /** Retries every pending close now (one run at a time); resolves with how many were applied. */
  function retry(): Promise<number> {
    running ??= retryOnce().finally(() => (running = null));
    return running;
  }

  return {
    /** Closes the row now or, if PostgreSQL fails, keeps the close and retries it. */
    async close(rec: AuditClose): Promise<"closed" | "not_open" | "queued"> {
      try {
        return (await closeHeldSession(o.db, rec)) ? "closed" : "not_open";
      } catch (err) {
        o.log.warn({ err, session_id: rec.sessionId }, "audit close failed: kept in the outbox and retried");
        const e = { rec, stored: false };
        pending.set(rec.sessionId, e);
        await store(e);
        schedule();
        return "queued";
      }
    },
    retry,
    /** Takes over the entries an earlier process with this worker id left in Redis. */
    async recover(): Promise<number> {
      const all = await o.redis.hgetall(key);
      for (const [id, v] of Object.entries(all)) {
        if (pending.has(id)) continue;
        const rec = parseEntry(id, v, o.log);
        if (rec && rec.workerId === o.workerId) pending.set(id, { rec, stored: true });
      }
      schedule();
      return pending.size;
    },
    get pending(): number {
      return pending.size;
    },
    /** Stops retrying; entries still pending stay in Redis for the sweeper. */
    stop(): void {
      stopped = true;
      if (timer !== null) timers.clearTimeout(timer);
      timer = null;
    },
  };
}
export type AuditOutbox = ReturnType<typeof createAuditOutbox>;
