import { Router } from "express";
import { AppError, type Db } from "@molecule/shared";
import type { Authenticator } from "../auth.ts";
import { z } from "zod";
import { validationError } from "../error-handler.ts";
import { loadOwned, parseId } from "../workspaces/service.ts";

/** POST …/terminal/tickets: `{"mode":"view"}` issues a ticket that opens only a viewer. */
export const ticketBody = z.object({ mode: z.enum(["control", "view"]).optional() }).strict();
import type { Tickets } from "./tickets.ts";

export function terminalRoutes(d: { db: Db; auth: Authenticator; tickets: Tickets }): Router {
  const r = Router();

  r.post("/workspaces/:id/terminal/tickets", async (req, res) => {
    const p = await d.auth.require(req);
    const id = parseId(req);
    const body = ticketBody.safeParse(req.body && typeof req.body === "object" && !Buffer.isBuffer(req.body) ? req.body : {});
    if (!body.success) throw validationError(body.error, "body");
    await loadOwned(d.db, p, id);
    const t = await d.tickets.issue(p, id, body.data.mode === "view");
    res.status(201).json({ ticket: t.ticket, expires_at: t.expiresAt.toISOString() });
  });

  // The WebSocket itself is served on the server's "upgrade" event; a plain GET (curl, a proxy
  // that dropped the Upgrade header) learns what to do instead of a 404.
  r.get("/workspaces/:id/terminal", (req, res) => {
    parseId(req);
    res.setHeader("Upgrade", "websocket");
    throw new AppError(426, "upgrade_required", "this is a WebSocket endpoint: send Connection: Upgrade and Upgrade: websocket");
  });

  // GET /workspaces/:id/terminal/sessions (paginated) lives in routes/terminal-sessions.ts.

  return r;
}
