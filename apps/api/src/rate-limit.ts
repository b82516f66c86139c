import type { Redis } from "ioredis";
import { RateLimitedError, rateLimitKey } from "@molecule/shared";

/** Fixed-window counter in Redis, shared by every API node. */
export function createRateLimiter(redis: Redis, ns: string) {
  return async function check(what: string, subject: string, limit: number, windowSec: number): Promise<void> {
    const window = Math.floor(Date.now() / 1000 / windowSec);
    const key = rateLimitKey(ns, what, subject, window);
    const [[, n] = [null, 0]] = (await redis.multi().incr(key).expire(key, windowSec + 1).exec()) ?? [];
    if (Number(n) > limit) {
      const retry = windowSec - (Math.floor(Date.now() / 1000) % windowSec);
      throw new RateLimitedError(`too many ${what} requests: at most ${limit} per ${windowSec} s`, retry);
    }
  };
}
export type RateLimiter = ReturnType<typeof createRateLimiter>;
