import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { WebSocket } from "ws";
import {
  BadRequestError,
  CLOSE,
  ForbiddenError,
  NotFoundError,
  SUBPROTOCOL_V1,
  UnauthorizedError,
  UnavailableError,
  isUuid,
  terminalQuery,
  type AppError,
  type Db,
  type TerminalQuery,
} from "@molecule/shared";
import type { Authenticator, Principal } from "../auth.ts";
import { bearerToken } from "../auth.ts";
import { validationError } from "../error-handler.ts";
import { loadById, ownedBy, type WorkspaceRow } from "../workspaces/service.ts";
import { sendError } from "./frames.ts";
import type { Tickets } from "./tickets.ts";

const PATH_RE = /^\/workspaces\/([^/]+)\/terminal\/?$/;

/** Everything an upgrade request has proved before a WebSocket exists for it. */
export interface Admitted {
  principal: Principal;
  workspace: WorkspaceRow;
  query: TerminalQuery;
}

export interface UpgradeAuthDeps {
  db: Db;
  auth: Authenticator;
  tickets: Tickets;
  allowedOrigins: string[];
  isDraining(): boolean;
}

/**
 * The checks an upgrade passes before anything exists: the path, the origin, the node not
 * draining, the subprotocol, the query, the bearer token or one-use ticket, and the workspace
 * being the caller's. Each failure is thrown as the AppError the client gets.
 */
export function createUpgradeAuth(d: UpgradeAuthDeps) {
  function originAllowed(req: IncomingMessage): boolean {
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    if (d.allowedOrigins.includes(origin) || d.allowedOrigins.includes("*")) return true;
    try {
      return new URL(origin).host === req.headers.host;
    } catch {
      return false;
    }
  }

  async function authenticate(req: IncomingMessage, workspaceId: string, q: TerminalQuery): Promise<Principal> {
    const token = bearerToken(req.headers.authorization);
    if (token !== undefined) return d.auth.authenticate(token);
    if (q.ticket !== undefined) {
      // A view ticket on a control URL is spent and refused: it never opens a controller.
      const p = await d.tickets.consume(q.ticket, workspaceId);
      if (!p) throw new UnauthorizedError("invalid, expired or already used ticket");
      const { viewOnly, ...principal } = p;
      if (viewOnly && q.mode !== "view") throw new ForbiddenError("this ticket is limited to viewing: add session=<id>&mode=view");
      return principal;
    }
    throw new UnauthorizedError("a bearer token or a ticket is required");
  }

  async function admit(req: IncomingMessage): Promise<Admitted> {
    const url = new URL(req.url ?? "/", "http://x");
    const m = PATH_RE.exec(url.pathname);
    if (!m) throw new NotFoundError("route");
    const workspaceId = m[1]!;
    if (!isUuid(workspaceId)) throw new BadRequestError("workspace id must be a UUID", [{ field: "id" }], "bad_id");
    if (!originAllowed(req)) throw new ForbiddenError(`origin ${req.headers.origin} is not allowed`);
    if (d.isDraining()) throw new UnavailableError("this API node is shutting down");
    checkSubprotocols(req);
    const q = terminalQuery.safeParse(Object.fromEntries(url.searchParams));
    if (!q.success) throw validationError(q.error, "terminal query");
    // Two round trips at once; the token is judged first, so a bad one is a 401 whatever the id.
    // Settled into a value: a failure is thrown below, and never unhandled when authentication fails first.
    const row = loadById(d.db, workspaceId).then(
      (r) => ({ r }),
      (err: unknown) => ({ err }),
    );
    const principal = await authenticate(req, workspaceId, q.data);
    const loaded = await row;
    if ("err" in loaded) throw loaded.err;
    const workspace = ownedBy(loaded.r, principal);
    return { principal, workspace, query: q.data };
  }

  return { admit };
}
export type UpgradeAuth = ReturnType<typeof createUpgradeAuth>;

/**
 * A client that offers subprotocols and none of ours would get an upgrade without one, which it
 * (browsers, ws) then drops, orphaning the shell it started: refuse it before anything exists.
 * No header at all is legacy raw mode.
 */
function checkSubprotocols(req: IncomingMessage): void {
  const header = req.headers["sec-websocket-protocol"];
  if (header === undefined) return;
  const offered = header.split(",").map((p) => p.trim()).filter(Boolean);
  if (offered.includes(SUBPROTOCOL_V1)) return;
  throw new BadRequestError(
    `none of the offered subprotocols is supported; offer ${SUBPROTOCOL_V1}, or none for legacy raw mode`,
    { offered: offered.slice(0, 8).map((p) => p.slice(0, 64)), supported: [SUBPROTOCOL_V1] },
    "unsupported_subprotocol",
  );
}

/** Writes an HTTP error on a socket that has not been upgraded: the same JSON body as the REST API. */
export function refuse(socket: Duplex, err: AppError): void {
  const body = JSON.stringify(err.toJSON());
  const reason = { 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 503: "Service Unavailable" }[err.status] ?? "Error";
  socket.end(
    `HTTP/1.1 ${err.status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** ws closes an oversized frame with 1009; the protocol says 1008 with a `policy` error first. */
export function patchOversizeClose(sock: WebSocket, maxFrameBytes: number): void {
  const close = sock.close.bind(sock);
  sock.close = (code?: number, reason?: string | Buffer) => {
    if (code === 1009) {
      sendError(sock, sock.protocol === SUBPROTOCOL_V1 ? "v1" : "raw", "policy", `frame larger than ${maxFrameBytes} bytes`);
      return close(CLOSE.policy, "frame too large");
    }
    return close(code, reason);
  };
}
