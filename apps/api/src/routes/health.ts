import { Router } from "express";
import type { Redis } from "ioredis";
import type postgres from "postgres";

/** How long a successful dependency probe of /readyz is reused. */
export const READY_REUSE_MS = 5000;

export function healthRoutes(d: { sql: postgres.Sql; redis: Redis; isDraining: () => boolean; now?: () => number }): Router {
  const r = Router();
  // No Date header on probes: writing one makes Node cache the date string with a timer to the next
  // second, one more wake-up of an idle node for every load balancer check.
  r.use(["/healthz", "/readyz"], (_req, res, next) => {
    res.sendDate = false;
    next();
  });
  r.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  // A successful probe of PostgreSQL and Redis is reused for READY_REUSE_MS: the load balancer
  // asks every 2 s, forever, and an idle node should not pay two round trips each time. A failed
  // one is not reused (the node comes back as soon as they do); draining is always current.
  let lastOk = Number.NEGATIVE_INFINITY;
  let probing: Promise<{ postgres: string; redis: string }> | null = null;
  const probe = async () => {
    // The timer goes once the probe settles: left running, each probe woke an idle node twice more.
    const timeout = <T>(p: Promise<T>) => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error("timeout")), 2000).unref()));
      return Promise.race([p, late]).finally(() => clearTimeout(timer));
    };
    const [pg, rd] = await Promise.allSettled([timeout(d.sql`select 1`), timeout(d.redis.ping())]);
    const r = { postgres: pg.status === "fulfilled" ? "ok" : "unreachable", redis: rd.status === "fulfilled" ? "ok" : "unreachable" };
    if (r.postgres === "ok" && r.redis === "ok") lastOk = (d.now ?? Date.now)();
    return r;
  };
  r.get("/readyz", async (_req, res) => {
    const fresh = (d.now ?? Date.now)() - lastOk < READY_REUSE_MS;
    const deps = fresh ? { postgres: "ok", redis: "ok" } : await (probing ??= probe().finally(() => (probing = null)));
    const checks = { ...deps, draining: d.isDraining() };
    const ok = checks.postgres === "ok" && checks.redis === "ok" && !checks.draining;
    if (ok) res.json({ status: "ready", checks });
    else res.status(503).json({ error: { code: "unavailable", message: "not ready", details: checks } });
  });
  return r;
}
