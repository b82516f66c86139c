import { Router } from "express";
import { and, asc, eq, gt } from "drizzle-orm";
import { z } from "zod";
import { schema, type Db } from "@molecule/shared";
import { isProvisionStep, PROVISION_STEPS, type ProvisionStep } from "@molecule/shared/provision-steps";
import type { Authenticator } from "../auth.ts";
import { validationError } from "../error-handler.ts";
import { loadOwned, parseId } from "../workspaces/service.ts";
import { decodeIdCursor, encodeIdCursor } from "./pagination.ts";

export const eventsQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(500).default(100),
    cursor: z.string().max(200).optional(),
  })
  .strict();

export const eventJson = z.object({
  id: z.number().int(),
  /** `status`: the workspace's status changed (from → to); `step`: provisioning entered a step. */
  type: z.enum(["status", "step"]),
  from: z.string().nullable(),
  to: z.string(),
  /** The provisioning step: queued, ready and failed for the status events that are those steps. */
  step: z.enum(PROVISION_STEPS).nullable(),
  message: z.string().nullable(),
  at: z.string(),
});
export const eventPageJson = z.object({ events: z.array(eventJson), next_cursor: z.string().nullable() });

type EventRow = typeof schema.workspaceEvents.$inferSelect;

/** A status event that is itself a provisioning step: entering provisioning/restarting is "queued", and so on. */
function stepOf(e: EventRow): ProvisionStep | null {
  if (e.step) return isProvisionStep(e.step) ? e.step : null;
  if (e.toStatus === "provisioning" || e.toStatus === "restarting") return "queued";
  if (e.toStatus === "ready") return "ready";
  if (e.toStatus === "failed") return "failed";
  return null;
}

export function toEventJson(e: EventRow): z.infer<typeof eventJson> {
  return {
    id: e.id,
    type: e.step ? "step" : "status",
    from: e.fromStatus,
    to: e.toStatus,
    step: stepOf(e),
    message: e.message,
    at: e.at.toISOString(),
  };
}

/** GET /workspaces/{id}/events: the lifecycle and provisioning steps, oldest first, a page at a time. */
export function eventRoutes(d: { db: Db; auth: Authenticator }): Router {
  const r = Router();
  r.get("/workspaces/:id/events", async (req, res) => {
    const p = await d.auth.require(req);
    const id = parseId(req);
    const q = eventsQuery.safeParse(req.query);
    if (!q.success) throw validationError(q.error, "query");
    const after = q.data.cursor === undefined ? null : decodeIdCursor(q.data.cursor);
    await loadOwned(d.db, p, id);
    const e = schema.workspaceEvents;
    const rows = await d.db
      .select()
      .from(e)
      .where(and(eq(e.workspaceId, id), after === null ? undefined : gt(e.id, after)))
      .orderBy(asc(e.id))
      .limit(q.data.limit + 1);
    const page = rows.slice(0, q.data.limit);
    const last = page[page.length - 1];
    res.json({ events: page.map(toEventJson), next_cursor: rows.length > q.data.limit && last ? encodeIdCursor(last.id) : null });
  });
  return r;
}
