import { fileURLToPath } from "node:url";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { createDb } from "./client.ts";
import { ignoreNotice } from "../errors.ts";

export const migrationsFolder = fileURLToPath(new URL("../../drizzle", import.meta.url));

/** Runs `fn` on a connection to the server's `postgres` database, with the target database's name checked. */
async function withAdmin<T>(url: string, fn: (admin: postgres.Sql, name: string) => Promise<T>): Promise<T> {
  const u = new URL(url);
  const name = decodeURIComponent(u.pathname.replace(/^\//, ""));
  if (!/^[A-Za-z0-9_-]{1,63}$/.test(name)) throw new Error(`unsupported database name: ${name}`);
  u.pathname = "/postgres";
  const admin = postgres(u.toString(), { max: 1, connect_timeout: 3, onnotice: ignoreNotice });
  try {
    return await fn(admin, name);
  } finally {
    await admin.end({ timeout: 2 });
  }
}

/** Creates the database named in `url` if it does not exist. */
export async function ensureDatabase(url: string): Promise<void> {
  await withAdmin(url, async (admin, name) => {
    const rows = await admin`select 1 from pg_database where datname = ${name}`;
    if (rows.length > 0) return;
    try {
      await admin.unsafe(`create database "${name}"`);
    } catch (err) {
      // Another process may have created it at the same moment.
      const code = (err as { code?: string }).code;
      if (code !== "42P04" && code !== "23505") throw err;
    }
  });
}

export async function dropDatabase(url: string): Promise<void> {
  await withAdmin(url, (admin, name) => admin.unsafe(`drop database if exists "${name}" with (force)`).then(() => undefined));
}

export async function migrateDatabase(url: string): Promise<void> {
  await ensureDatabase(url);
  const h = createDb(url, { max: 1 });
  try {
    // Serialise concurrent migrators (several processes starting at once).
    await h.sql`select pg_advisory_lock(823461)`;
    await migrate(h.db, { migrationsFolder });
    await h.sql`select pg_advisory_unlock(823461)`;
  } finally {
    await h.close();
  }
}
