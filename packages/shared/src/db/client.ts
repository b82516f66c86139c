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
  const db = drizzle(preparing(sql), { schema });
  return { db, sql, close: () => sql.end({ timeout: 2 }) };
}

/**
 * The client as drizzle gets it: every query with parameters runs as a prepared statement.
 * Drizzle sends each query through `sql.unsafe`, which postgres.js leaves unprepared, and an
 * unprepared query with parameters costs a Describe round trip before its Execute round trip
 * (postgres.js learns the parameter types first) plus a parse and plan in PostgreSQL every time:
 * 430 against 167 µs a lookup here, two round trips of every terminal open and REST request.
 * Prepared, a statement is parsed once per connection and every later run is one round trip.
 * Statements are cached per connection by their text, so query shapes must stay few: no SQL text
 * that grows with the data (reportSessionBytes passes arrays, not a VALUES list per row).
 * Queries without parameters stay simple-protocol queries (postgres.js's own rule).
 */
function preparing(sql: postgres.Sql): postgres.Sql {
  // Made once per client, not on every query.
  const unsafe = (query: string, args?: unknown[], options?: { prepare?: boolean; simple?: boolean }) =>
    sql.unsafe(query, args as postgres.ParameterOrJSON<never>[], args && args.length > 0 && !options?.simple ? { ...options, prepare: true } : options);
  // Inside a transaction drizzle runs on the transaction's own client: prepared the same way.
  const begin = (...a: unknown[]) => {
    const fn = a[a.length - 1] as (tx: postgres.TransactionSql) => unknown;
    const wrapped = ((tx: postgres.TransactionSql) => fn(preparing(tx as unknown as postgres.Sql) as unknown as postgres.TransactionSql)) as never;
    return a.length > 1 ? sql.begin(a[0] as string, wrapped) : sql.begin(wrapped);
  };
  return new Proxy(sql, {
    get(target, prop, receiver) {
      if (prop === "unsafe") return unsafe;
      if (prop === "begin") return begin;
      return Reflect.get(target, prop, receiver);
    },
  });
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
