import { Redis, type RedisOptions } from "ioredis";
import { z } from "zod";

function protocolOf(url: string): string {
  try {
    return new URL(url).protocol;
  } catch {
    return "";
  }
}

/** Settings both apps read. Each app's own src/env.ts extends this and is the only reader of process.env. */
export const baseEnvSchema = z.object({
  /** Credentials go in the URL (`postgres://user:password@host/db`); URL-encode special characters. */
  DATABASE_URL: z
    .string()
    .url()
    .refine((u) => /^postgres(ql)?:$/.test(protocolOf(u)), "must be a postgres:// or postgresql:// URL")
    .default("postgres://postgres@127.0.0.1:5432/molecule"),
  /** `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS; a password alone authenticates as `default`. */
  REDIS_URL: z
    .string()
    .url()
    .refine((u) => /^rediss?:$/.test(protocolOf(u)), "must be a redis:// or rediss:// URL")
    .default("redis://127.0.0.1:6379"),
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

/** The URL with its password replaced by `***`: the only form of a data-service URL that may be logged or printed. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparsable URL)";
  }
}

/**
 * Connects once with the URL's credentials and runs PING: resolves when Redis
 * accepts them, rejects with what Redis answered (WRONGPASS, NOAUTH, NOPERM) or
 * why it could not connect, naming the URL without its password. Start-up
 * calls this so wrong credentials stop a process at once rather than leaving it
 * retrying in the background.
 */
export async function verifyRedis(url: string, timeoutMs = 3000): Promise<void> {
  let last: Error | null = null;
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: timeoutMs });
  r.on("error", (err: Error) => (last = err));
  try {
    await r.connect();
    await r.ping();
  } catch (err) {
    // ioredis reports a refused AUTH as "Connection is closed": the reason is the last error event.
    const why = (last ?? (err as Error)).message;
    const auth = /WRONGPASS|NOAUTH|NOPERM|invalid password|AUTH/i.test(why);
    throw new Error(
      auth
        ? `Redis at ${redactUrl(url)} refused the credentials: ${why} (set them in REDIS_URL: redis://user:password@host:port)`
        : `Redis at ${redactUrl(url)} is not usable: ${why}`,
    );
  } finally {
    r.disconnect();
  }
}
