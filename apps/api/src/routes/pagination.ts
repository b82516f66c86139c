import { sql, type SQL } from "drizzle-orm";
import type { PgColumn } from "drizzle-orm/pg-core";
import { BadRequestError, uuidParam } from "@molecule/shared";

/**
 * Keyset cursors for lists ordered by (timestamp desc, id desc). The timestamp travels as
 * PostgreSQL's own microsecond text, not a JS Date: rows made within one millisecond would
 * otherwise be skipped or repeated across pages.
 */
const TS_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z$/;

export function badCursor(): BadRequestError {
  return new BadRequestError("invalid cursor", [{ field: "cursor", message: "not a cursor from a previous page" }], "validation_failed");
}

/** The column as UTC text with microseconds, to select beside a row for its cursor. */
export const cursorTs = (col: PgColumn) => sql<string>`to_char(${col} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

export function encodeKeyset(ts: string, id: string): string {
  return Buffer.from(`${ts}|${id}`).toString("base64url");
}

export function decodeKeyset(c: string): { ts: string; id: string } {
  const [ts, id, extra] = Buffer.from(c, "base64url").toString("utf8").split("|");
  if (extra !== undefined || !ts || !TS_RE.test(ts) || Number.isNaN(Date.parse(ts)) || !id || !uuidParam.safeParse(id).success) throw badCursor();
  return { ts, id };
}

/** Rows strictly after the cursor in (ts desc, id desc) order. */
export function olderThan(tsCol: PgColumn, idCol: PgColumn, c: { ts: string; id: string }): SQL {
  return sql`(${tsCol}, ${idCol}) < (${c.ts}::timestamptz, ${c.id}::uuid)`;
}

/** Cursors over a bigserial id (events, oldest first). */
export function encodeIdCursor(id: number): string {
  return Buffer.from(`e${id}`).toString("base64url");
}
export function decodeIdCursor(c: string): number {
  const m = /^e(\d{1,18})$/.exec(Buffer.from(c, "base64url").toString("utf8"));
  const n = m ? Number(m[1]) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw badCursor();
  return n;
}
