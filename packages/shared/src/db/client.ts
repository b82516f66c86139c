import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { redactUrl } from "../config.ts";
import * as schema from "./schema.ts";
import { ignoreNotice } from "../errors.ts";

export type Db = PostgresJsDatabase<typeof schema>;
export interface DbHandle {
  db: Db;
  sql: postgres.Sql;
  close(): Promise<void>;
}

/** Short connect timeout so a Postgres outage becomes a 503 within seconds, not a hang. */
export function createDb(url: string, opts: { max?: number } = {}): DbHandle {
  const sql = postgres(url, {
    max: opts.max ?? 10,
    connect_timeout: 3,
    idle_timeout: 30,
    onnotice: ignoreNotice,
  });
  const db = drizzle(sql, { schema });
  return { db, sql, close: () => sql.end({ timeout: 2 }) };
}

/**
 * Connects once with the URL's credentials: resolves when PostgreSQL accepts
 * them, rejects naming the URL without its password and what the server said
 * (e.g. `password authentication failed for user "x"`).
 */
export async function verifyDatabase(url: string): Promise<void> {
  // The server's `postgres` database, as migrations do first: the target may not exist yet.
  const admin = new URL(url);
  admin.pathname = "/postgres";
  const sql = postgres(admin.toString(), { max: 1, connect_timeout: 3, onnotice: ignoreNotice });
  try {
    await sql`select 1`;
  } catch (err) {
    throw new Error(
      `PostgreSQL at ${redactUrl(url)} refused the connection: ${(err as Error).message} (credentials go in DATABASE_URL: postgres://user:password@host:port/db)`,
    );
  } finally {
    await sql.end({ timeout: 1 });
  }
}
