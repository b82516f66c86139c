import { eq, sql } from "drizzle-orm";
import { generateToken, hashToken, isWellFormedToken, schema, tokenDisplayPrefix, type Db } from "@molecule/shared";

export interface CreatedToken {
  orgId: string;
  tokenId: string;
  token: string;
}

/** Creates an org and its first token. The token is returned once and stored only hashed. */
export async function createOrg(db: Db, name: string, token = generateToken()): Promise<CreatedToken> {
  return db.transaction((tx) => insertOrgWithToken(tx, name, token));
}

async function insertOrgWithToken(tx: Pick<Db, "insert">, name: string, token: string): Promise<CreatedToken> {
  if (!isWellFormedToken(token)) throw new Error("token must look like mol_<43 base64url characters>");
  const [org] = await tx.insert(schema.orgs).values({ name }).returning();
  const [tok] = await tx
    .insert(schema.apiTokens)
    .values({ orgId: org!.id, prefix: tokenDisplayPrefix(token), hash: hashToken(token) })
    .returning();
  return { orgId: org!.id, tokenId: tok!.id, token };
}

export async function createToken(db: Db, orgId: string, name = "default"): Promise<CreatedToken> {
  const token = generateToken();
  const [tok] = await db
    .insert(schema.apiTokens)
    .values({ orgId, name, prefix: tokenDisplayPrefix(token), hash: hashToken(token) })
    .returning();
  return { orgId, tokenId: tok!.id, token };
}

export async function revokeToken(db: Db, tokenIdOrPrefix: string): Promise<number> {
  const col = /^[0-9a-f-]{36}$/.test(tokenIdOrPrefix) ? schema.apiTokens.id : schema.apiTokens.prefix;
  const rows = await db
    .update(schema.apiTokens)
    .set({ revokedAt: sql`now()` as unknown as Date })
    .where(eq(col, tokenIdOrPrefix))
    .returning({ id: schema.apiTokens.id });
  return rows.length;
}

/**
 * On a database with no org, creates the default org; returns its token (the
 * bootstrap token when given) or null when an org already exists.
 */
export async function bootstrapDefaultOrg(db: Db, bootstrapToken?: string): Promise<CreatedToken | null> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(823462)`);
    const [{ n } = { n: 0 }] = await tx.select({ n: sql<number>`count(*)::int` }).from(schema.orgs);
    if (n > 0) return null;
    return insertOrgWithToken(tx, "default", bootstrapToken ?? generateToken());
  });
}
