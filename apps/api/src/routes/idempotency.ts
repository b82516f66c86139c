import { createHash } from "node:crypto";
import { and, eq, gte, lt, sql } from "drizzle-orm";
import { AppError, BadRequestError, schema, type Db } from "@molecule/shared";

/** How long a key counts: a retry within it gets the first result; after it the key is new again. */
export const IDEMPOTENCY_TTL_HOURS = 24;
/** Printable ASCII without spaces at the ends (Stripe's and the IETF draft's keys are UUIDs or similar). */
const KEY_RE = /^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$/;

type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];

export class IdempotencyKeyReusedError extends AppError {
  constructor() {
    super(
      422,
      "idempotency_key_reused",
      "this Idempotency-Key was already used with a different request body in the last 24 h; use a new key for a different request",
      null,
    );
  }
}

/** The Idempotency-Key header: undefined when absent; 400 when malformed or sent twice. */
export function idempotencyKey(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const v = Array.isArray(header) ? header : [header];
  if (v.length !== 1 || !KEY_RE.test(v[0]!)) {
    throw new BadRequestError(
      "invalid Idempotency-Key header",
      [{ field: "Idempotency-Key", message: "one value of 1 to 255 printable ASCII characters (a UUID is a good key)" }],
      "validation_failed",
    );
  }
  return v[0]!;
}

/** The validated body, canonical (keys sorted): `{"name":"a"}` and `{"tier":2,"name":"a"}` are one request. */
export function requestHash(body: Record<string, unknown>): string {
  const canonical = JSON.stringify(Object.fromEntries(Object.entries(body).sort(([a], [b]) => (a < b ? -1 : 1))));
  return createHash("sha256").update(canonical).digest("hex");
}

const fresh = () => sql`now() - make_interval(hours => ${IDEMPOTENCY_TTL_HOURS})`;

/** The unexpired record of a key, if any. */
export async function findKey(db: Db, orgId: string, key: string): Promise<typeof schema.idempotencyKeys.$inferSelect | null> {
  const k = schema.idempotencyKeys;
  const [row] = await db
    .select()
    .from(k)
    .where(and(eq(k.orgId, orgId), eq(k.key, key), gte(k.createdAt, fresh())));
  return row ?? null;
}

/**
 * Claims a key inside the transaction that creates the workspace. False when another request
 * holds it (a concurrent one waits on the row lock until the first commits, then gets false).
 * An expired record is taken over.
 */
export async function claimKey(tx: Tx, v: { orgId: string; key: string; requestHash: string; workspaceId: string; statusCode: number }): Promise<boolean> {
  const k = schema.idempotencyKeys;
  const rows = await tx
    .insert(k)
    .values(v)
    .onConflictDoUpdate({
      target: [k.orgId, k.key],
      set: { requestHash: v.requestHash, workspaceId: v.workspaceId, statusCode: v.statusCode, createdAt: sql`now()` },
      where: lt(k.createdAt, fresh()),
    })
    .returning({ key: k.key });
  return rows.length === 1;
}

/** Deletes expired keys of an org (called now and then from the create path; bounded). */
export async function pruneKeys(db: Db, orgId: string): Promise<void> {
  const k = schema.idempotencyKeys;
  await db.delete(k).where(and(eq(k.orgId, orgId), lt(k.createdAt, fresh())));
}
