import { Router } from "express";
import { and, desc, eq, ne } from "drizzle-orm";
import { z } from "zod";
import {
  ConflictError,
  NotFoundError,
  STATUSES,
  UnauthorizedError,
  UnsupportedMediaTypeError,
  createWorkspaceBody,
  getWorkspace,
  schema,
  transitionWorkspace,
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
import { claimKey, findKey, IdempotencyKeyReusedError, idempotencyKey, pruneKeys, requestHash } from "./idempotency.ts";
import { cursorTs, decodeKeyset, encodeKeyset, olderThan } from "./pagination.ts";

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

/** Rolls back a create whose Idempotency-Key another request holds. */
class KeyTaken extends Error {}

export function workspaceRoutes(d: WorkspaceRoutesDeps): Router {
  const r = Router();

  r.post("/workspaces", async (req, res) => {
    const p = await d.auth.require(req);
    if (!req.is("application/json")) throw new UnsupportedMediaTypeError();
    const body = createWorkspaceBody.safeParse(req.body);
    if (!body.success) throw validationError(body.error, "workspace");
    const key = idempotencyKey(req.headers["idempotency-key"]);
    const hash = key === undefined ? "" : requestHash(body.data);

    /** A retry of a create that is already made: the same workspace, as it is now. */
    const replay = async (prior: { requestHash: string; workspaceId: string; statusCode: number }) => {
      if (prior.requestHash !== hash) throw new IdempotencyKeyReusedError();
      const workspace = await loadOwned(d.db, p, prior.workspaceId);
      // The first request may have died between its commit and the enqueue; a job id per workspace makes this safe.
      if (workspace.status === "provisioning") await d.provisioner.enqueue(workspace.id, "create");
      res.status(prior.statusCode).location(`/workspaces/${workspace.id}`).setHeader("Idempotent-Replayed", "true").json(toWorkspaceJson(workspace));
    };
    if (key !== undefined) {
      const prior = await findKey(d.db, p.orgId, key);
      if (prior) return replay(prior);
      await pruneKeys(d.db, p.orgId);
    }
    await d.rateLimit("workspace_create", p.orgId, d.createRatePerMin, 60);
    const workspace = await d.db
      .transaction(async (tx) => {
        const [row] = await tx
          .insert(schema.workspaces)
          .values({ orgId: p.orgId, ...body.data, status: "provisioning", provider: d.provider })
          .returning();
        await tx.insert(schema.workspaceEvents).values({ workspaceId: row!.id, fromStatus: null, toStatus: "provisioning" });
        if (key !== undefined && !(await claimKey(tx, { orgId: p.orgId, key, requestHash: hash, workspaceId: row!.id, statusCode: 201 }))) {
          throw new KeyTaken();
        }
        return row!;
      })
      .catch((err: unknown) => {
        if (err instanceof KeyTaken) return null;
        throw err;
      });
    if (!workspace) {
      // A concurrent request with this key committed first: answer as its retry.
      const prior = key === undefined ? null : await findKey(d.db, p.orgId, key);
      if (!prior) throw new ConflictError("a request with this Idempotency-Key is in progress; retry it");
      return replay(prior);
    }
    await d.provisioner.enqueue(workspace.id, "create");
    res.status(201).location(`/workspaces/${workspace.id}`).json(toWorkspaceJson(workspace));
  });

  r.get("/workspaces", async (req, res) => {
    const p = await d.auth.require(req);
    const q = listQuery.safeParse(req.query);
    if (!q.success) throw validationError(q.error, "query");
    const { limit, cursor, status } = q.data;
    const w = schema.workspaces;
    const conds = [eq(w.orgId, p.orgId), status ? eq(w.status, status) : ne(w.status, "removed")];
    if (cursor) conds.push(olderThan(w.createdAt, w.id, decodeKeyset(cursor)));
    const rows = await d.db
      .select({ row: w, ts: cursorTs(w.createdAt) })
      .from(w)
      .where(and(...conds))
      .orderBy(desc(w.createdAt), desc(w.id))
      .limit(limit + 1);
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    res.json({
      workspaces: page.map((x) => toWorkspaceJson(x.row)),
      next_cursor: rows.length > limit && last ? encodeKeyset(last.ts, last.row.id) : null,
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
