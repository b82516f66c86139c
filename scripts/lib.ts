import net from "node:net";
import { redactUrl, verifyDatabase, verifyRedis } from "@molecule/shared";

/** True when a TCP connection to host:port opens within `ms`. */
export function reachable(url: string, defaultPort: number, ms = 3000): Promise<boolean> {
  const u = new URL(url);
  const port = Number(u.port || defaultPort);
  const host = u.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1";
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(ms, () => done(false));
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}

export const HOW_TO_START = {
  postgres: [
    "  docker compose up -d postgres",
    "  or, with Debian's package: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
  ],
  redis: [
    "  docker compose up -d redis",
    '  or: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
  ],
};

/** Fails fast, and says how to start what is missing. */
export async function requireServices(databaseUrl: string, redisUrl: string): Promise<void> {
  const [pg, rd] = await Promise.all([reachable(databaseUrl, 5432), reachable(redisUrl, 6379)]);
  const missing: string[] = [];
  if (!pg) missing.push(`PostgreSQL is not reachable at ${new URL(databaseUrl).host}. Start it with:`, ...HOW_TO_START.postgres);
  if (!rd) missing.push(`Redis is not reachable at ${new URL(redisUrl).host}. Start it with:`, ...HOW_TO_START.redis);
  if (missing.length) {
    process.stderr.write(`${missing.join("\n")}\n(or point DATABASE_URL / REDIS_URL at running servers)\n`);
    process.exit(2);
  }
  // Reachable but refusing the URL's credentials (a password-protected Redis, scram PostgreSQL): say which, and stop.
  const refused = (
    await Promise.all([verifyDatabase(databaseUrl).then(() => null, (err: Error) => err.message), verifyRedis(redisUrl).then(() => null, (err: Error) => err.message)])
  ).filter((m): m is string => m !== null);
  if (refused.length) {
    process.stderr.write(`${refused.join("\n")}\n(DATABASE_URL=${redactUrl(databaseUrl)} REDIS_URL=${redactUrl(redisUrl)})\n`);
    process.exit(2);
  }
}
