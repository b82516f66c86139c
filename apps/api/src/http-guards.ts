import type { Server } from "node:http";
import type { Socket } from "node:net";
import type { Express, RequestHandler } from "express";
import { PayloadTooLargeError, type Logger } from "@molecule/shared";
import { MethodNotAllowedError, UnsupportedCharsetError } from "./error-handler.ts";

/** The parts of the router's layers (router 2.x, express 5) the method lookup reads. */
interface LayerLike {
  match(path: string): false | { path: string };
  route?: { methods: Record<string, boolean | undefined> };
  handle?: { stack?: LayerLike[] };
}

/** Every method some registered route answers on `path` (HEAD wherever GET), sorted; [] if no route has the path. */
export function allowedMethods(stack: readonly LayerLike[], path: string): string[] {
  const out = new Set<string>();
  for (const layer of stack) {
    let m: false | { path: string };
    try {
      m = layer.match(path);
    } catch (err) {
      // The path matched but a parameter did not percent-decode (%ff): still this route's path.
      if (!(err instanceof URIError)) throw err;
      m = { path };
    }
    if (!m) continue;
    if (layer.route) {
      for (const [method, on] of Object.entries(layer.route.methods)) {
        if (!on || method === "_all") continue;
        out.add(method.toUpperCase());
        if (method === "get") out.add("HEAD");
      }
    } else if (layer.handle?.stack) {
      // A mounted router: its routes see the path below the mount point.
      for (const x of allowedMethods(layer.handle.stack, path.slice(m.path.length) || "/")) out.add(x);
    }
  }
  return [...out].sort();
}

/**
 * Runs just before the final 404: a known path asked with a method it lacks is a 405 with
 * `Allow`, derived from the routes registered on `app` (so a new route needs no list kept).
 */
export function methodNotAllowed(app: Express): RequestHandler {
  return (req, _res, next) => {
    const allow = allowedMethods((app.router as unknown as { stack: LayerLike[] }).stack, req.path);
    if (allow.length > 0 && !allow.includes(req.method)) next(new MethodNotAllowedError(req.method, allow));
    else next();
  };
}

const hasBody = (h: { "content-length"?: string; "transfer-encoding"?: string }) =>
  h["transfer-encoding"] !== undefined || (h["content-length"] !== undefined && h["content-length"] !== "0");

/**
 * Refuses, before a byte of the body is read, what the body parsers would read in full first:
 * a declared Content-Length over the limit (body-parser answers only after draining it, so a
 * client announcing 10 GB waited for ever) and a charset other than UTF-8 (RFC 8259).
 */
export function bodyGuard(limitBytes: number): RequestHandler {
  return (req, res, next) => {
    if (!hasBody(req.headers)) return next();
    const declared = req.headers["content-length"];
    // Node has already rejected a non-numeric or duplicated Content-Length.
    if (declared !== undefined && Number(declared) > limitBytes) {
      // The body stays unread: close the connection after the answer rather than drain it.
      res.setHeader("Connection", "close");
      return next(new PayloadTooLargeError(limitBytes));
    }
    const charset = /;\s*charset\s*=\s*"?([^";\s]*)"?/i.exec(req.headers["content-type"] ?? "")?.[1];
    if (charset !== undefined && !/^utf-?8$/i.test(charset)) return next(new UnsupportedCharsetError(charset.toLowerCase()));
    next();
  };
}

const clientErrorStatus: Record<string, [number, string, string]> = {
  HPE_HEADER_OVERFLOW: [431, "headers_too_large", "request headers are too large"],
  ERR_HTTP_REQUEST_TIMEOUT: [408, "request_timeout", "request took too long to arrive"],
};

/**
 * Requests Node's parser refuses (a malformed header line, an overflowing or repeated
 * Content-Length) get the same JSON error shape as everything else, instead of a bare 400.
 */
export function jsonClientErrors(server: Server, log: Logger): void {
  server.on("clientError", (err: Error & { code?: string }, socket: Socket) => {
    // Node's own handler checks the same: never write over a response already on its way.
    const inFlight = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (err.code === "ECONNRESET" || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const [status, code, message] = clientErrorStatus[err.code ?? ""] ?? [400, "bad_request", "malformed HTTP request"];
    log.debug({ code: err.code, status }, "refused a malformed request");
    const body = JSON.stringify({ error: { code, message, details: { reason: err.code ?? null } } });
    socket.end(
      `HTTP/1.1 ${status} ${status === 400 ? "Bad Request" : status === 408 ? "Request Timeout" : "Request Header Fields Too Large"}\r\n` +
        `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
}
