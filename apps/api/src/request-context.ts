import { randomUUID } from "node:crypto";
import type { RequestHandler } from "express";
import type { Logger } from "@molecule/shared";

const PROBES = new Set(["/healthz", "/readyz", "/metrics"]);

/** Gives every request an id (X-Request-Id, echoed back) and a child logger; logs one line per response. */
export function requestContext(log: Logger): RequestHandler {
  return (req, res, next) => {
    const incoming = req.headers["x-request-id"];
    const id = typeof incoming === "string" && /^[A-Za-z0-9_.-]{1,64}$/.test(incoming) ? incoming : randomUUID();
    // Workspace routes log the workspace id as a field of its own, so one grep finds a workspace's requests.
    const workspaceId = /^\/workspaces\/([0-9a-fA-F-]{36})(?:[/?]|$)/.exec(req.url)?.[1];
    const reqLog = log.child(workspaceId ? { req_id: id, workspace_id: workspaceId } : { req_id: id });
    Object.assign(req, { id, log: reqLog });
    res.setHeader("X-Request-Id", id);
    const start = process.hrtime.bigint();
    res.on("finish", () => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      const line = { method: req.method, url: req.originalUrl, status: res.statusCode, ms: Math.round(ms * 10) / 10 };
      // The load balancer's and Prometheus' probes (every few seconds, forever) only at debug, unless they fail.
      if (PROBES.has(req.path) && res.statusCode < 400) reqLog.debug(line, "request");
      else reqLog.info(line, "request");
    });
    next();
  };
}
