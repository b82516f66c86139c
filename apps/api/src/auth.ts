import type { Request } from "express";
import { and, eq, isNull, sql } from "drizzle-orm";
import { hashToken, isWellFormedToken, logged, schema, UnauthorizedError, type Db, type Logger } from "@molecule/shared";

export interface Principal {
  orgId: string;
  tokenId: string;
  tokenPrefix: string;
}

/** Reads `Authorization: Bearer <token>`; undefined when the header is absent. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m?.[1]) throw new UnauthorizedError("Authorization header must be 'Bearer <token>'");
  return m[1];
}

export function createAuthenticator(db: Db, log: Logger) {
  const lastTouched = new Map<string, number>();

  async function authenticate(token: string): Promise<Principal> {
    if (!isWellFormedToken(token)) throw new UnauthorizedError("invalid token");
    const [row] = await db
      .select({ id: schema.apiTokens.id, orgId: schema.apiTokens.orgId, prefix: schema.apiTokens.prefix })
      .from(schema.apiTokens)
      .where(and(eq(schema.apiTokens.hash, hashToken(token)), isNull(schema.apiTokens.revokedAt)));
    if (!row) throw new UnauthorizedError("invalid or revoked token");
    // last_used_at at most once a minute per token: not a write per request.
    const now = Date.now();
    if ((lastTouched.get(row.id) ?? 0) < now - 60_000) {
      lastTouched.set(row.id, now);
      void db
        .update(schema.apiTokens)
        .set({ lastUsedAt: sql`now()` as unknown as Date })
        .where(eq(schema.apiTokens.id, row.id))
        // Only the "last used" column is behind: the request itself goes on.
        .catch(logged(log, "warn", "could not record the token's last use", { token_id: row.id }));
    }
    return { orgId: row.orgId, tokenId: row.id, tokenPrefix: row.prefix };
  }

  /** Authenticates a request; throws 401 when the token is missing or bad. */
  async function require(req: Request): Promise<Principal> {
    const token = bearerToken(req.headers.authorization);
    if (token === undefined) throw new UnauthorizedError();
    return authenticate(token);
  }

  return { authenticate, require };
}
export type Authenticator = ReturnType<typeof createAuthenticator>;
