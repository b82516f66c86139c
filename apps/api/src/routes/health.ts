import { Router } from "express";
import type { Redis } from "ioredis";
import type postgres from "postgres";

export function healthRoutes(d: { sql: postgres.Sql; redis: Redis; isDraining: () => boolean }): Router {
  const r = Router();
  r.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  r.get("/readyz", async (_req, res) => {
    const timeout = <T>(p: Promise<T>) =>
      Promise.race([p, new Promise<never>((_, rej) => setTimeout(() => rej(new Error("timeout")), 2000).unref())]);
    const [pg, rd] = await Promise.allSettled([timeout(d.sql`select 1`), timeout(d.redis.ping())]);
    const checks = {
      postgres: pg.status === "fulfilled" ? "ok" : "unreachable",
      redis: rd.status === "fulfilled" ? "ok" : "unreachable",
      draining: d.isDraining(),
    };
    const ok = checks.postgres === "ok" && checks.redis === "ok" && !checks.draining;
    if (ok) res.json({ status: "ready", checks });
    else res.status(503).json({ error: { code: "unavailable", message: "not ready", details: checks } });
  });
  return r;
}
