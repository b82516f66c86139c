import { afterAll, describe, expect, it } from "vitest";
import { createRedis, RateLimitedError } from "@molecule/shared";
import { testUrls, uniqueNs } from "../../../test/helpers/env.ts";
import { waitFor } from "../../../test/helpers/http.ts";
import { createRateLimiter } from "./rate-limit.ts";

const redis = createRedis(testUrls().redisUrl);
afterAll(() => redis.disconnect());

/** Whether one request goes through now; a refusal's Retry-After seconds otherwise. */
async function attempt(check: ReturnType<typeof createRateLimiter>, subject: string): Promise<true | number> {
  try {
    await check("thing", subject, 3, 1);
    return true;
  } catch (err) {
    if (err instanceof RateLimitedError) return err.retryAfterSec;
    throw err;
  }
}

describe("rate limiter (sliding window on Redis' clock)", () => {
  it("lets `limit` through in any window, never more, and counts per subject across API nodes", async () => {
    const ns = uniqueNs();
    // Two nodes' limiters on their own connections share one count.
    const other = createRedis(testUrls().redisUrl);
    try {
      const a = createRateLimiter(redis, ns);
      const b = createRateLimiter(other, ns);
      expect(await attempt(a, "org-1")).toBe(true);
      expect(await attempt(b, "org-1")).toBe(true);
      expect(await attempt(a, "org-1")).toBe(true);
      const refused = await attempt(b, "org-1");
      expect(refused).toBe(1);
      // Another subject has its own count.
      expect(await attempt(a, "org-2")).toBe(true);
      // Each of the first three frees its place a window after it was taken (however far apart a
      // loaded machine spread them), refusals taking none: three more, then none.
      let accepted = 0;
      await waitFor(async () => ((await attempt(accepted % 2 ? b : a, "org-1")) === true ? ++accepted : accepted) === 3, 5000, 20);
      expect(typeof (await attempt(a, "org-1"))).toBe("number");
    } finally {
      other.disconnect();
    }
  });

  it("slides: a request frees its place one window after it was accepted, not at a window's edge", async () => {
    const ns = uniqueNs();
    const check = createRateLimiter(redis, ns);
    // Taken before the request: Redis counts it from a moment after this.
    const firstAt = performance.now();
    expect(await attempt(check, "s")).toBe(true);
    // Two more some time later: all three places taken.
    await waitFor(async () => performance.now() - firstAt > 600, 2000, 20);
    expect(await attempt(check, "s")).toBe(true);
    expect(await attempt(check, "s")).toBe(true);
    expect(typeof (await attempt(check, "s"))).toBe("number");
    // The first leaves the window first: then exactly one place is free, not three.
    await waitFor(async () => (await attempt(check, "s")) === true, 3000, 20);
    const freedAfter = performance.now() - firstAt;
    // (A fixed window would free all three at its next edge, up to a whole window early.)
    expect(freedAfter).toBeGreaterThanOrEqual(990);
    expect(typeof (await attempt(check, "s"))).toBe("number");
  });
});
