import type { Request } from "express";
import { and, eq } from "drizzle-orm";
import { BadRequestError, NotFoundError, schema, uuidParam, type Db } from "@molecule/shared";
import type { Principal } from "../auth.ts";

export type WorkspaceRow = typeof schema.workspaces.$inferSelect;

/** The `:id` route parameter as a workspace id; anything else is a 400 bad_id. */
export function parseId(req: Request): string {
  const r = uuidParam.safeParse(req.params.id);
  if (!r.success) throw new BadRequestError("workspace id must be a UUID", [{ field: "id", message: r.error.issues[0]?.message }], "bad_id");
  return r.data;
}

/** Loads a workspace of the caller's org; another org's workspace is indistinguishable from a missing one. */
export async function loadOwned(db: Db, p: Principal, id: string): Promise<WorkspaceRow> {
  const [row] = await db
    .select()
    .from(schema.workspaces)
    .where(and(eq(schema.workspaces.id, id), eq(schema.workspaces.orgId, p.orgId)));
  if (!row) throw new NotFoundError();
  return row;
}

/**
 * Loads a workspace by id alone, for a caller who proves who it is at the same time (the
 * terminal upgrade: the token lookup and this run in parallel); `ownedBy` then decides.
 */
export async function loadById(db: Db, id: string): Promise<WorkspaceRow | null> {
  const [row] = await db.select().from(schema.workspaces).where(eq(schema.workspaces.id, id));
  return row ?? null;
}

/** The row as the principal may see it: another org's workspace is indistinguishable from a missing one. */
export function ownedBy(row: WorkspaceRow | null, p: Principal): WorkspaceRow {
  if (!row || row.orgId !== p.orgId) throw new NotFoundError();
  return row;
}
