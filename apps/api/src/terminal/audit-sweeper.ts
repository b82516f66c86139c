import { and, asc, eq, gt, inArray, isNull, lt, or } from "drizzle-orm";
import {
  applyOutboxEntries,
  clientList,
  parseSessionEnd,
  schema,
  sessionKeys,
  workerAliveKey,
  workerConnectedIn,
  type ByteRedis,
  type Db,
  type Logger,
} from "@molecule/shared";
import type { SessionControl } from "./session-control.ts";
import { periodic, realTimers, type Timers } from "./timers.ts";

/** Open audit rows the sweeper reads per query, and judges per sweep (it goes on from there next time). */
const SWEEP_PAGE = 500;
const SWEEP_MAX_ROWS = 5000;
const SWEEP_EVERY_MS = 10_000;

export interface AuditSweeperDeps {
  db: Db;
  redis: ByteRedis;
  log: Logger;
  control: Pick<SessionControl, "closeAudit">;
  ns: string;
  claimTimeoutMs: number;
  timers?: Timers;
}

/**
 * Closes audit rows nobody else will close: sessions whose worker died while no
 * node watched them, and sessions never claimed. Idempotent; any node may run it.
 */
export function createAuditSweeper(d: AuditSweeperDeps) {
  const timers = d.timers ?? realTimers;
  /**
   * Where the last sweep stopped: open rows are judged in (opened_at, id) order, a bounded number
   * per sweep, so rows that must wait (no session state here yet) never hide newer ones.
   */
  let sweepFrom: { openedAt: Date; id: string } | null = null;

  async function sweep(): Promise<number> {
    const now = timers.now();
    const cutoff = new Date(now - d.claimTimeoutMs - 5000);
    const t = schema.terminalSessions;
    const open = and(isNull(t.closedAt), lt(t.openedAt, cutoff));
    // Only rows a sweep may close: never claimed, or claimed by a worker that is gone. Liveness is
    // checked once per worker (and CLIENT LIST read at most once), not per row.
    const workers = (await d.db.selectDistinct({ w: t.workerId }).from(t).where(open)).map((r) => r.w).filter((w): w is string => w !== null);
    let list: Promise<string | null> | null = null;
    const dead = async (w: string) => {
      if (await d.redis.exists(workerAliveKey(d.ns, w))) return false;
      list ??= clientList(d.redis);
      const l = await list;
      return l === null || !workerConnectedIn(l, d.ns, w);
    };
    const deadFlags = await Promise.all(workers.map(dead));
    const gone = workers.filter((_, i) => deadFlags[i]);
    const sweepable = and(open, gone.length ? or(isNull(t.workerId), inArray(t.workerId, gone)) : isNull(t.workerId));
    let closed = 0;
    for (let judged = 0; judged < SWEEP_MAX_ROWS; ) {
      const from = sweepFrom;
      const rows = await d.db
        .select({ id: t.id, workerId: t.workerId, openedAt: t.openedAt })
        .from(t)
        .where(and(sweepable, from ? or(gt(t.openedAt, from.openedAt), and(eq(t.openedAt, from.openedAt), gt(t.id, from.id))) : undefined))
        .orderBy(asc(t.openedAt), asc(t.id))
        .limit(SWEEP_PAGE);
      const last = rows[rows.length - 1];
      // At the end of the rows: the next sweep starts again from the oldest.
      sweepFrom = rows.length === SWEEP_PAGE && last ? { openedAt: last.openedAt, id: last.id } : null;
      // Issued together: ioredis pipelines them, one round trip per page instead of per row.
      const states = await Promise.all(rows.map((r) => d.redis.hmget(sessionKeys(d.ns, r.id).meta, "state", "end")));
      // Closes the dead workers wrote to the outbox (PostgreSQL was down at the end) win over worker_lost.
      const fromOutbox = await applyOutboxEntries(d.db, d.redis, d.ns, rows.filter((r) => r.workerId !== null).map((r) => r.id), d.log);
      closed += fromOutbox.size;
      for (const [i, r] of rows.entries()) {
        if (fromOutbox.has(r.id)) continue;
        // Rows whose session state is not in this deployment's Redis (another key prefix on a shared
        // database, or state lost with a Redis restart) are judged only once they are very old.
        const [state = null, end = null] = states[i] ?? [];
        const ancient = r.openedAt.getTime() < now - 24 * 3600_000;
        if (state === null && !ancient) continue;
        if (r.workerId !== null) {
          await d.control.closeAudit(r.id, "worker_lost", r.workerId);
          closed++;
        } else if (state === "pending" || state === null) {
          await d.control.closeAudit(r.id, "no_capacity");
          closed++;
        } else if (state === "ended") {
          // Ended before any worker could claim the row (its claim failed): the recorded end says why
          // (validated by its owner, session-state.ts; an invalid one reads as spawn_failed).
          await d.control.closeAudit(r.id, parseSessionEnd(end)?.reason ?? "spawn_failed");
          closed++;
        }
      }
      judged += rows.length;
      if (!sweepFrom) break;
    }
    return closed;
  }

  const loop = periodic(timers, SWEEP_EVERY_MS, sweep, (err) => d.log.warn({ err }, "audit sweep failed (next one in 10 s)"));
  return { sweep, start: loop.start, stop: loop.stop };
}
export type AuditSweeper = ReturnType<typeof createAuditSweeper>;
