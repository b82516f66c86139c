/**
 * The server-side admin tool (orgs and tokens, straight in PostgreSQL): `pnpm molecule admin …`
 * (the CLI forwards here), or `node --import tsx scripts/molecule.ts …` on a server.
 * `--help` and `--version` need no database: the database code loads only for a real command.
 */
import { readFileSync } from "node:fs";

const usage = `usage: pnpm molecule admin <command>
  org create <name>               a new org and its first token (shown once)
  token create <org-id>           another token for an org (shown once)
  token revoke <token-id|prefix>  revoke a token
Needs DATABASE_URL (default postgres://postgres@127.0.0.1:5432/molecule).`;

const args = process.argv.slice(2);
const [what, verb, arg, ...rest] = args;
const known = rest.length === 0 && arg !== undefined && ((what === "org" && verb === "create") || (what === "token" && (verb === "create" || verb === "revoke")));

if (args.length === 1 && (what === "--version" || what === "-V")) {
  const pkg = JSON.parse(readFileSync(new URL("../apps/cli/package.json", import.meta.url), "utf8")) as { version: string };
  process.stdout.write(`${pkg.version}\n`);
} else if (args.includes("--help") || args.includes("-h") || what === "help") {
  process.stdout.write(`${usage}\n`);
} else if (!known) {
  process.stderr.write(`${usage}\n`);
  process.exitCode = 2;
} else {
  const { createDb, migrateDatabase } = await import("@molecule/shared");
  const { loadApiEnv } = await import("../apps/api/src/env.ts");
  const { createOrg, createToken, revokeToken } = await import("../apps/api/src/orgs.ts");
  const env = loadApiEnv();
  await migrateDatabase(env.DATABASE_URL);
  const h = createDb(env.DATABASE_URL, { max: 1 });
  try {
    if (what === "org") {
      const t = await createOrg(h.db, arg);
      process.stdout.write(`org ${t.orgId} created\ntoken (shown once): ${t.token}\n`);
    } else if (verb === "create") {
      const t = await createToken(h.db, arg);
      process.stdout.write(`token (shown once): ${t.token}\n`);
    } else {
      const n = await revokeToken(h.db, arg);
      process.stdout.write(n ? `revoked ${n} token(s)\n` : "no such token\n");
      process.exitCode = n ? 0 : 1;
    }
  } finally {
    await h.close();
  }
}
