import { Redis, type RedisOptions } from "ioredis";
import { z } from "zod";

/** Settings both apps read. Each app's own src/env.ts extends this and is the only reader of process.env. */
export const baseEnvSchema = z.object({
  DATABASE_URL: z.string().url().default("postgres://postgres@127.0.0.1:5432/molecule"),
  REDIS_URL: z.string().url().default("redis://127.0.0.1:6379"),
  /** Key prefix in Redis: one per deployment (or test run) sharing a Redis. */
  MOLECULE_REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).default("molecule"),
  MOLECULE_PROVIDER: z.enum(["local", "docker", "aws"]).default("local"),
  LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
});
export type BaseEnv = z.infer<typeof baseEnvSchema>;

export const boolish = z
  .union([z.boolean(), z.string()])
  .transform((v) => (typeof v === "boolean" ? v : !["0", "false", "no", "off", ""].includes(v.toLowerCase())));

/** Parses an env object, turning zod issues into one readable startup error. */
export function parseEnv<T extends z.ZodType>(schema: T, env: Record<string, string | undefined>): z.infer<T> {
  const r = schema.safeParse(env);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new Error(`invalid configuration:\n${lines.join("\n")}`);
  }
  return r.data;
}

/** BullMQ needs maxRetriesPerRequest null on its connections; we use it everywhere so commands wait out a Redis restart. */
export function createRedis(url: string, opts: RedisOptions = {}): Redis {
  return new Redis(url, {
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    retryStrategy: (n) => Math.min(50 * n, 1000),
    ...opts,
  });
}
