import { Router } from "express";
import { and, desc, eq } from "drizzle-orm";
import { z } from "zod";
import { schema, type Db } from "@molecule/shared";
import type { Authenticator } from "../auth.ts";
import { validationError } from "../error-handler.ts";
import { toAuditJson } from "../terminal/audit-json.ts";
import { loadOwned, parseId } from "../workspaces/service.ts";
import { cursorTs, decodeKeyset, encodeKeyset, olderThan } from "./pagination.ts";

export const sessionsQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(200).default(50),
    cursor: z.string().max(200).optional(),
  })
  .strict();

/** GET /workspaces/{id}/terminal/sessions: the terminal audit, newest first, a page at a time. */
export function terminalSessionRoutes(d: { db: Db; auth: Authenticator }): Router {
  const r = Router();
  r.get("/workspaces/:id/terminal/sessions", async (req, res) => {
    const p = await d.auth.require(req);
    const id = parseId(req);
    const q = sessionsQuery.safeParse(req.query);
    if (!q.success) throw validationError(q.error, "query");
    const c = q.data.cursor === undefined ? null : decodeKeyset(q.data.cursor);
    await loadOwned(d.db, p, id);
    const t = schema.terminalSessions;
    const rows = await d.db
      .select({ row: t, ts: cursorTs(t.openedAt) })
      .from(t)
      .where(and(eq(t.workspaceId, id), c ? olderThan(t.openedAt, t.id, c) : undefined))
      .orderBy(desc(t.openedAt), desc(t.id))
      .limit(q.data.limit + 1);
    const page = rows.slice(0, q.data.limit);
    const last = page[page.length - 1];
    res.json({
      sessions: page.map((x) => toAuditJson(x.row)),
      next_cursor: rows.length > q.data.limit && last ? encodeKeyset(last.ts, last.row.id) : null,
    });
  });
  return r;
}
