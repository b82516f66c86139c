/**
 * Admin CLI: pnpm molecule org create <name> | token create <org-id> | token revoke <token-id|prefix>
 */
import { createDb, migrateDatabase } from "@molecule/shared";
import { loadApiEnv } from "../apps/api/src/env.ts";
import { createOrg, createToken, revokeToken } from "../apps/api/src/orgs.ts";

const [what, verb, arg] = process.argv.slice(2);
const usage = "usage: pnpm molecule org create <name> | token create <org-id> | token revoke <token-id|prefix>";
const env = loadApiEnv();
await migrateDatabase(env.DATABASE_URL);
const h = createDb(env.DATABASE_URL, { max: 1 });
try {
  if (what === "org" && verb === "create" && arg) {
    const t = await createOrg(h.db, arg);
    process.stdout.write(`org ${t.orgId} created\ntoken (shown once): ${t.token}\n`);
  } else if (what === "token" && verb === "create" && arg) {
    const t = await createToken(h.db, arg);
    process.stdout.write(`token (shown once): ${t.token}\n`);
  } else if (what === "token" && verb === "revoke" && arg) {
    const n = await revokeToken(h.db, arg);
    process.stdout.write(n ? `revoked ${n} token(s)\n` : "no such token\n");
    process.exitCode = n ? 0 : 1;
  } else {
    process.stderr.write(`${usage}\n`);
    process.exitCode = 2;
  }
} finally {
  await h.close();
}
