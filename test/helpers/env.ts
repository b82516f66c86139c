import { randomBytes } from "node:crypto";
import { inject } from "vitest";

let n = 0;
/** A Redis key prefix of this test's own (under the run's prefix). */
export function uniqueNs(): string {
  return `${inject("ns")}-${process.pid.toString(36)}${(n++).toString(36)}${randomBytes(2).toString("hex")}`;
}

export function testUrls() {
  return { databaseUrl: inject("databaseUrl"), redisUrl: inject("redisUrl") };
}

/** Environment for a child API or worker process of this test. */
export function childEnv(ns: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const { databaseUrl, redisUrl } = testUrls();
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    MOLECULE_REDIS_PREFIX: ns,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "warn",
    PORT: "0",
    ...extra,
  };
}
