import { randomBytes } from "node:crypto";
import type { TestProject } from "vitest/node";
import { Redis } from "ioredis";
import { deleteKeysMatching, dropDatabase, migrateDatabase } from "@molecule/shared";

/**
 * One database and one Redis key prefix per test run, so runs never trample each
 * other or a dev stack on the same servers. Test files derive their own prefixes
 * from the run's (helpers/env.ts), so their workers never take each other's jobs.
 */
export default async function setup(project: TestProject) {
  const run = `${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;
  const base = new URL(process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/molecule");
  base.pathname = `/molecule_test_${run}`;
  const databaseUrl = base.toString();
  const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
  const ns = `mt-${run}`;
  await migrateDatabase(databaseUrl);
  process.env.MOLECULE_TEST_DATABASE_URL = databaseUrl;
  process.env.MOLECULE_TEST_REDIS_URL = redisUrl;
  process.env.MOLECULE_TEST_NS = ns;
  project.provide("databaseUrl", databaseUrl);
  project.provide("redisUrl", redisUrl);
  project.provide("ns", ns);

  return async () => {
    await dropDatabase(databaseUrl).catch(() => {});
    const r = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await r.connect();
      // Every test's own prefix starts with the run's.
      await deleteKeysMatching(r, [`${ns}*`, `{${ns}*`]);
    } catch {
      // Redis gone: nothing to clean.
    } finally {
      r.disconnect();
    }
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    databaseUrl: string;
    redisUrl: string;
    ns: string;
  }
}
