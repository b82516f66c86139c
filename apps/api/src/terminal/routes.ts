import { Router } from "express";
import { desc, eq } from "drizzle-orm";
import { schema, type Db } from "@molecule/shared";
import type { Authenticator } from "../auth.ts";
import { loadOwned, parseId } from "../routes/workspaces.ts";
import { toAuditJson } from "./audit-json.ts";
import type { Tickets } from "./tickets.ts";

export function terminalRoutes(d: { db: Db; auth: Authenticator; tickets: Tickets }): Router {
  const r = Router();

  r.post("/workspaces/:id/terminal/tickets", async (req, res) => {
    const p = await d.auth.require(req);
    const id = parseId(req);
    await loadOwned(d.db, p, id);
    const t = await d.tickets.issue(p, id);
    res.status(201).json({ ticket: t.ticket, expires_at: t.expiresAt.toISOString() });
  });

  r.get("/workspaces/:id/terminal/sessions", async (req, res) => {
    const p = await d.auth.require(req);
    const id = parseId(req);
    await loadOwned(d.db, p, id);
    const rows = await d.db
      .select()
      .from(schema.terminalSessions)
      .where(eq(schema.terminalSessions.workspaceId, id))
      .orderBy(desc(schema.terminalSessions.openedAt))
      .limit(200);
    res.json({ sessions: rows.map(toAuditJson) });
  });

  return r;
}
