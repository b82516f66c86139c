/**
 * What ./start and ./cluster both do before they run anything: check Redis and
 * PostgreSQL, migrate, find (or bootstrap) an org token, build the Canvas.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { createDb, hashToken, isWellFormedToken, migrateDatabase, schema, type Db } from "@molecule/shared";
import type { ApiEnv } from "../apps/api/src/env.ts";
import { buildCanvasIfStale } from "../apps/canvas/build.ts";
import { bootstrapDefaultOrg, createOrg, createToken } from "../apps/api/src/orgs.ts";
import { requireServices } from "./lib.ts";
import { ROOT } from "./processes.ts";

/** Where ./start and ./cluster keep their state (dev token, logs): MOLECULE_STATE_DIR or .molecule/. */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.MOLECULE_STATE_DIR ?? join(ROOT, ".molecule");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** Fails fast (exit 2 with how to start them) when Redis or PostgreSQL is missing, then migrates. */
export async function prepareServices(env: Pick<ApiEnv, "DATABASE_URL" | "REDIS_URL">): Promise<void> {
  await requireServices(env.DATABASE_URL, env.REDIS_URL);
  await migrateDatabase(env.DATABASE_URL);
}

async function withDb<T>(databaseUrl: string, fn: (db: Db) => Promise<T>): Promise<T> {
  const h = createDb(databaseUrl, { max: 1 });
  try {
    return await fn(h.db);
  } finally {
    await h.close();
  }
}

/**
 * The default org's token, as ./start prints it: the bootstrap token on an empty
 * database, else the one saved (0600) in `tokenFile` while it is still valid, else
 * a new "dev" token. When the database has orgs but no "default" one: undefined,
 * or (createMissing) a new "default" org.
 */
export async function defaultOrgToken(
  env: Pick<ApiEnv, "DATABASE_URL" | "MOLECULE_BOOTSTRAP_TOKEN">,
  tokenFile: string,
  o: { createMissing?: boolean } = {},
): Promise<string | undefined> {
  const token = await withDb(env.DATABASE_URL, async (db) => {
    const boot = await bootstrapDefaultOrg(db, env.MOLECULE_BOOTSTRAP_TOKEN);
    if (boot) return boot.token;
    if (env.MOLECULE_BOOTSTRAP_TOKEN) return env.MOLECULE_BOOTSTRAP_TOKEN;
    if (existsSync(tokenFile)) {
      const saved = readFileSync(tokenFile, "utf8").trim();
      const [row] = isWellFormedToken(saved)
        ? await db.select().from(schema.apiTokens).where(eq(schema.apiTokens.hash, hashToken(saved)))
        : [];
      if (row && !row.revokedAt) return saved;
    }
    const [org] = await db.select().from(schema.orgs).where(eq(schema.orgs.name, "default")).limit(1);
    if (org) return (await createToken(db, org.id, "dev")).token;
    return o.createMissing ? (await createOrg(db, "default")).token : undefined;
  });
  if (token) writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  return token;
}

/** A new token for the org named `name`, creating the org when it does not exist. */
export async function namedOrgToken(databaseUrl: string, name: string): Promise<string> {
  return withDb(databaseUrl, async (db) => {
    const [org] = await db.select().from(schema.orgs).where(eq(schema.orgs.name, name)).limit(1);
    return org ? (await createToken(db, org.id, "dev")).token : (await createOrg(db, name)).token;
  });
}

/**
 * Builds the Canvas when dist/ is missing or older than its sources (locked and swapped in
 * whole, so parallel starts and tests never see half a build); the API runs without it otherwise.
 */
export function buildCanvasIfNeeded(): void {
  if (!buildCanvasIfStale()) process.stdout.write("Canvas build failed: the API runs without it\n");
}

/** The environment API and worker processes get: the caller's, minus the bootstrap token (already used). */
export function nodeEnv(env: NodeJS.ProcessEnv, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env, ...extra };
  delete out.MOLECULE_BOOTSTRAP_TOKEN;
  return out;
}

/** The lines ./start and ./cluster print once everything is up. */
export function banner(o: { title: string; url: string; token: string | undefined; logs: string[]; extra?: string[] }): string {
  return [
    "",
    `${o.title}: ${o.url}`,
    `  Canvas:    ${o.url}/`,
    `  Org token: ${o.token ?? "(default org missing: run pnpm molecule org create <name>)"}`,
    ...(o.extra ?? []),
    `  Logs:      ${o.logs.join(", ")}`,
    "",
    `  export API=${o.url} ORG_TOKEN=${o.token ?? ""}`,
    "",
    "Ctrl-C stops it.",
    "",
  ].join("\n");
}
