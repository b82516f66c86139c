/**
 * The single-node stack on local defaults: checks Redis and PostgreSQL, creates
 * and migrates the database, makes sure the default org has a token, builds the
 * Canvas if needed, then runs one API node and one terminal-worker.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { createDb, isWellFormedToken, migrateDatabase, schema, hashToken } from "@molecule/shared";
import { loadApiEnv } from "../apps/api/src/env.ts";
import { bootstrapDefaultOrg, createToken } from "../apps/api/src/orgs.ts";
import { requireServices } from "./lib.ts";
import { API_MAIN, ROOT, WORKER_MAIN, startNode, stopProc } from "./processes.ts";

const env = loadApiEnv();
await requireServices(env.DATABASE_URL, env.REDIS_URL);
await migrateDatabase(env.DATABASE_URL);

// The dev token is kept (0600) under .molecule/ so every start can print it again.
const stateDir = process.env.MOLECULE_STATE_DIR ?? join(ROOT, ".molecule");
mkdirSync(stateDir, { recursive: true, mode: 0o700 });
const tokenFile = join(stateDir, "dev-token");
const h = createDb(env.DATABASE_URL, { max: 1 });
let token: string | undefined;
const boot = await bootstrapDefaultOrg(h.db, env.MOLECULE_BOOTSTRAP_TOKEN);
if (boot) token = boot.token;
else if (env.MOLECULE_BOOTSTRAP_TOKEN) token = env.MOLECULE_BOOTSTRAP_TOKEN;
else if (existsSync(tokenFile)) {
  const saved = readFileSync(tokenFile, "utf8").trim();
  const [row] = isWellFormedToken(saved)
    ? await h.db.select().from(schema.apiTokens).where(eq(schema.apiTokens.hash, hashToken(saved)))
    : [];
  if (row && !row.revokedAt) token = saved;
}
if (!token) {
  const [org] = await h.db.select().from(schema.orgs).where(eq(schema.orgs.name, "default")).limit(1);
  if (org) token = (await createToken(h.db, org.id, "dev")).token;
}
await h.close();
if (token) writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });

if (!existsSync(join(ROOT, "apps/canvas/dist/index.html")) && existsSync(join(ROOT, "apps/canvas/index.html"))) {
  process.stdout.write("building the Canvas…\n");
  const r = spawnSync("pnpm", ["--filter", "@molecule/canvas", "build"], { cwd: ROOT, stdio: "inherit" });
  if (r.status !== 0) process.stdout.write("Canvas build failed: the API runs without it\n");
}

const logs = join(stateDir, "logs");
const childEnv = { ...process.env, MOLECULE_BOOTSTRAP_TOKEN: undefined };
const worker = startNode("terminal-worker", WORKER_MAIN, childEnv, join(logs, "worker.log"));
const api = startNode("api", API_MAIN, childEnv, join(logs, "api.log"));
try {
  const [ready] = await Promise.all([api.ready, worker.ready]);
  const url = `http://${env.HOST}:${ready.port}`;
  process.stdout.write(
    [
      "",
      `Molecule is running: ${url}`,
      `  Canvas:    ${url}/`,
      `  Org token: ${token ?? "(default org missing: run pnpm molecule org create <name>)"}`,
      `  Logs:      ${logs}/api.log, ${logs}/worker.log`,
      "",
      `  export API=${url} ORG_TOKEN=${token ?? ""}`,
      "",
      "Ctrl-C stops it.",
      "",
    ].join("\n"),
  );
} catch (err) {
  process.stderr.write(`${(err as Error).message}; see ${logs}\n`);
  await Promise.all([stopProc(api), stopProc(worker)]);
  process.exit(1);
}

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await Promise.all([stopProc(api), stopProc(worker)]);
  process.exit(0);
};
process.on("SIGINT", () => void stop());
process.on("SIGTERM", () => void stop());
void Promise.race([api.exited, worker.exited]).then(async (code) => {
  if (stopping) return;
  process.stderr.write(`a process exited (${code}); stopping. See ${logs}\n`);
  await stop();
});
