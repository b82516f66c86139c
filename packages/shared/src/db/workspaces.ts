import { and, eq, inArray, sql } from "drizzle-orm";
import { sourcesOf, type WorkspaceStatus } from "../workspace.ts";
import type { Db } from "./client.ts";
import { workspaceEvents, workspaces, type Workspace } from "./schema.ts";

export interface TransitionOpts {
  message?: string | null;
  instanceId?: string | null;
  /** Restrict the source statuses further (e.g. only from "provisioning"). */
  from?: WorkspaceStatus[];
}

/**
 * Moves a workspace to `to` only from a status the lifecycle allows, in one
 * conditional UPDATE plus its event row, so concurrent actors can never make an
 * illegal move. Returns the updated row, or null when the move was not legal.
 */
export async function transitionWorkspace(db: Db, id: string, to: WorkspaceStatus, opts: TransitionOpts = {}): Promise<Workspace | null> {
  const from = (opts.from ?? sourcesOf(to)).filter((s) => sourcesOf(to).includes(s));
  if (from.length === 0) return null;
  return db.transaction(async (tx) => {
    const [prev] = await tx
      .select({ status: workspaces.status })
      .from(workspaces)
      .where(eq(workspaces.id, id))
      .for("update");
    if (!prev || !from.includes(prev.status as WorkspaceStatus)) return null;
    const set: Partial<typeof workspaces.$inferInsert> = { status: to, updatedAt: sql`now()` as unknown as Date };
    if (to === "ready") {
      set.readyAt = sql`now()` as unknown as Date;
      set.error = null;
    }
    if (to === "failed") set.error = opts.message ?? "provisioning failed";
    if (to === "restarting" || to === "provisioning") set.error = null;
    if (opts.instanceId !== undefined) set.instanceId = opts.instanceId;
    const [row] = await tx
      .update(workspaces)
      .set(set)
      .where(and(eq(workspaces.id, id), inArray(workspaces.status, from)))
      .returning();
    if (!row) return null;
    await tx.insert(workspaceEvents).values({
      workspaceId: id,
      fromStatus: prev.status,
      toStatus: to,
      message: opts.message ?? null,
    });
    return row;
  });
}

export async function getWorkspace(db: Db, id: string): Promise<Workspace | null> {
  const [row] = await db.select().from(workspaces).where(eq(workspaces.id, id));
  return row ?? null;
}

export async function setInstanceId(db: Db, id: string, instanceId: string | null): Promise<void> {
  await db.update(workspaces).set({ instanceId, updatedAt: sql`now()` as unknown as Date }).where(eq(workspaces.id, id));
}
