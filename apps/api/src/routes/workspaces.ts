import { Router } from "express";
import { and, desc, eq, lt, ne, or } from "drizzle-orm";
import { z } from "zod";
import {
  BadRequestError,
  ConflictError,
  NotFoundError,
  STATUSES,
  UnauthorizedError,
  UnsupportedMediaTypeError,
  createWorkspaceBody,
  getWorkspace,
  schema,
  transitionWorkspace,
  uuidParam,
  type Db,
  type ProviderName,
} from "@molecule/shared";
import type { Authenticator } from "../auth.ts";
import { bearerToken } from "../auth.ts";
import { validationError } from "../error-handler.ts";
import type { RateLimiter } from "../rate-limit.ts";
import type { Provisioner } from "../provisioner.ts";
import { toWorkspaceJson } from "../workspace-json.ts";
import { loadOwned, parseId } from "../workspaces/service.ts";

export const listQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(200).default(50),
    cursor: z.string().max(200).optional(),
    status: z.enum(STATUSES).optional(),
  })
  .strict();

export interface WorkspaceRoutesDeps {
  db: Db;
  auth: Authenticator;
  rateLimit: RateLimiter;
  provisioner: Provisioner;
  provider: ProviderName;
  publicStatus: boolean;
  createRatePerMin: number;
  /** Ends every terminal session of a workspace (the terminal gateway provides it). */
  endWorkspaceSessions: (workspaceId: string) => Promise<void>;
}

function encodeCursor(createdAt: Date, id: string): string {
  return Buffer.from(`${createdAt.toISOString()}|${id}`).toString("base64url");
}
function decodeCursor(c: string): { createdAt: Date; id: string } {
  const [ts, id] = Buffer.from(c, "base64url").toString("utf8").split("|");
  const createdAt = new Date(ts ?? "");
  if (!id || !uuidParam.safeParse(id).success || Number.isNaN(createdAt.getTime())) {
    throw new BadRequestError("invalid cursor", [{ field: "cursor", message: "not a cursor from a previous page" }], "validation_failed");
  }
  return { createdAt, id };
}

export function workspaceRoutes(d: WorkspaceRoutesDeps): Router {
  const r = Router();

  r.post("/workspaces", async (req, res) => {
    const p = await d.auth.require(req);
    if (!req.is("application/json")) throw new UnsupportedMediaTypeError();
    const body = createWorkspaceBody.safeParse(req.body);
    if (!body.success) throw validationError(body.error, "workspace");
    await d.rateLimit("workspace_create", p.orgId, d.createRatePerMin, 60);
    const ws = await d.db.transaction(async (tx) => {
      const [row] = await tx
        .insert(schema.workspaces)
        .values({ orgId: p.orgId, ...body.data, status: "provisioning", provider: d.provider })
        .returning();
      await tx.insert(schema.workspaceEvents).values({ workspaceId: row!.id, fromStatus: null, toStatus: "provisioning" });
      return row!;
    });
    await d.provisioner.enqueue(ws.id, "create");
    res.status(201).location(`/workspaces/${ws.id}`).json(toWorkspaceJson(ws));
  });

  r.get("/workspaces", async (req, res) => {
    const p = await d.auth.require(req);
    const q = listQuery.safeParse(req.query);
    if (!q.success) throw validationError(q.error, "query");
    const { limit, cursor, status } = q.data;
    const w = schema.workspaces;
    const conds = [eq(w.orgId, p.orgId), status ? eq(w.status, status) : ne(w.status, "removed")];
    if (cursor) {
      const c = decodeCursor(cursor);
      conds.push(or(lt(w.createdAt, c.createdAt), and(eq(w.createdAt, c.createdAt), lt(w.id, c.id)))!);
    }
    const rows = await d.db
      .select()
      .from(w)
      .where(and(...conds))
      .orderBy(desc(w.createdAt), desc(w.id))
      .limit(limit + 1);
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    res.json({
      workspaces: page.map(toWorkspaceJson),
      next_cursor: rows.length > limit && last ? encodeCursor(last.createdAt, last.id) : null,
    });
  });

  r.get("/workspaces/:id", async (req, res) => {
    const id = parseId(req);
    if (bearerToken(req.headers.authorization) === undefined) {
      if (!d.publicStatus) throw new UnauthorizedError();
      // The tutorial's poll loop reads only the status, without a token.
      const row = await getWorkspace(d.db, id);
      if (!row) throw new NotFoundError();
      res.json({ id: row.id, status: row.status });
      return;
    }
    const p = await d.auth.require(req);
    res.json(toWorkspaceJson(await loadOwned(d.db, p, id)));
  });

  r.get("/workspaces/:id/events", async (req, res) => {
    const p = await d.auth.require(req);
    const id = parseId(req);
    await loadOwned(d.db, p, id);
    const rows = await d.db
      .select()
      .from(schema.workspaceEvents)
      .where(eq(schema.workspaceEvents.workspaceId, id))
      .orderBy(schema.workspaceEvents.id);
    res.json({
      events: rows.map((e) => ({ from: e.fromStatus, to: e.toStatus, message: e.message, at: e.at.toISOString() })),
    });
  });

  r.delete("/workspaces/:id", async (req, res) => {
    const p = await d.auth.require(req);
    const id = parseId(req);
    const row = await loadOwned(d.db, p, id);
    if (row.status === "removed" || row.status === "removing") {
      res.status(202).json(toWorkspaceJson(row));
      return;
    }
    const moved = (await transitionWorkspace(d.db, id, "removing")) ?? (await loadOwned(d.db, p, id));
    await d.endWorkspaceSessions(id);
    await d.provisioner.enqueue(id, "destroy");
    res.status(202).json(toWorkspaceJson(moved));
  });

  r.post("/workspaces/:id/restart", async (req, res) => {
    const p = await d.auth.require(req);
    const id = parseId(req);
    const row = await loadOwned(d.db, p, id);
    const moved = await transitionWorkspace(d.db, id, "restarting", { from: ["ready", "failed"] });
    if (!moved) {
      throw new ConflictError(`cannot restart a workspace that is ${row.status}; only ready or failed workspaces restart`, {
        status: row.status,
      });
    }
    await d.endWorkspaceSessions(id);
    await d.provisioner.enqueue(id, "restart", moved.updatedAt.getTime());
    res.status(202).json(toWorkspaceJson(moved));
  });

  return r;
}
