import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { luaScript, RateLimitedError, rateLimitKey } from "@molecule/shared";

const slidingWindow = luaScript("rate-limit", 1);

/**
 * At most `limit` requests per subject in any `windowSec` seconds, shared by every API node: a
 * sliding window on Redis' clock (lua/rate-limit.lua). A fixed window let twice the limit through
 * across its edge, and a node's own clock (which may step) decided which window a request was in.
 */
export function createRateLimiter(redis: Redis, ns: string) {
  return async function check(what: string, subject: string, limit: number, windowSec: number): Promise<void> {
    const waitMs = Number(await slidingWindow(redis, [rateLimitKey(ns, what, subject), limit, windowSec * 1000, randomUUID()]));
    if (waitMs > 0) throw new RateLimitedError(`too many ${what} requests: at most ${limit} per ${windowSec} s`, Math.ceil(waitMs / 1000));
  };
}
export type RateLimiter = ReturnType<typeof createRateLimiter>;
