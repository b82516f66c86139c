import type { ErrorRequestHandler } from "express";
import { z } from "zod";
import {
  AppError,
  BadRequestError,
  PayloadTooLargeError,
  UnavailableError,
  isDbUnavailable,
  type Logger,
} from "@molecule/shared";

/** Turns zod issues into `details`: one entry per bad field, named by its path. */
export function zodDetails(err: z.ZodError) {
  return err.issues.map((i) => ({ field: i.path.join(".") || null, message: i.message, code: i.code }));
}

export function validationError(err: z.ZodError, what = "request"): BadRequestError {
  const fields = [...new Set(err.issues.map((i) => i.path.join(".")).filter(Boolean))];
  const msg = fields.length ? `invalid ${what}: ${fields.join(", ")}` : `invalid ${what}`;
  return new BadRequestError(msg, zodDetails(err), "validation_failed");
}

function causeChain(err: unknown): unknown[] {
  const out: unknown[] = [];
  let e: unknown = err;
  for (let i = 0; e && i < 5; i++) {
    out.push(e);
    e = (e as { cause?: unknown }).cause;
  }
  return out;
}

/** The Content-Encodings a request body may have (body-parser inflates them; the limit counts inflated bytes). */
export const ACCEPTED_ENCODINGS = ["gzip", "deflate", "br"] as const;

export class UnsupportedEncodingError extends AppError {
  constructor(encoding: string) {
    super(415, "unsupported_encoding", `unsupported Content-Encoding "${encoding}"; send ${ACCEPTED_ENCODINGS.join(", ")} or none`, {
      encoding,
      accepted: ACCEPTED_ENCODINGS,
    });
  }
}

export class UnsupportedCharsetError extends AppError {
  constructor(charset: string) {
    super(415, "unsupported_charset", `unsupported charset "${charset}"; JSON bodies must be UTF-8`, { charset });
  }
}

export class MethodNotAllowedError extends AppError {
  constructor(
    method: string,
    readonly allow: string[],
  ) {
    super(405, "method_not_allowed", `${method} is not allowed here; allowed: ${allow.join(", ")}`, { allow });
  }
}

/** An id that is not even valid percent-encoding answers like any other malformed id. */
export function badIdError(message = "not valid percent-encoding"): BadRequestError {
  return new BadRequestError("workspace id must be a UUID", [{ field: "id", message }], "bad_id");
}

/** Maps any thrown error to an AppError (the one JSON error shape every route answers with). */
export function toAppError(err: unknown, contentEncoding?: string): AppError {
  if (err instanceof AppError) return err;
  const e = err as { type?: string; status?: unknown; limit?: number; encoding?: string; charset?: string; expose?: boolean };
  if (e?.type === "entity.too.large") return new PayloadTooLargeError(e.limit ?? 0);
  if (e?.type === "entity.parse.failed") return new BadRequestError("request body is not valid JSON", null, "bad_json");
  if (e?.type === "encoding.unsupported") return new UnsupportedEncodingError(e.encoding ?? contentEncoding ?? "");
  if (e?.type === "charset.unsupported") return new UnsupportedCharsetError(e.charset ?? "");
  // The router marks a path parameter it cannot percent-decode (%ff, a lone %) with status 400;
  // every path parameter of this API is a workspace id.
  if (err instanceof URIError && e.status === 400) return badIdError();
  const status = typeof e?.status === "number" ? e.status : 0;
  if (status >= 400 && status < 500) {
    // body-parser's other client errors: a body that does not inflate (zlib's "incorrect header
    // check"), an aborted request, a body shorter than its Content-Length.
    const enc = contentEncoding?.toLowerCase();
    // raw-body's own errors carry a `type`; an error without one came from the decompressor.
    if (enc && enc !== "identity" && e.type === undefined && typeof (err as { errno?: unknown }).errno === "number") {
      return new BadRequestError(`request body is not valid ${enc} data`, { encoding: enc }, "bad_encoding");
    }
    return new AppError(status, "bad_request", e.expose && err instanceof Error ? err.message : "bad request");
  }
  if (causeChain(err).some(isDbUnavailable)) return new UnavailableError("the database is unavailable; try again shortly");
  return new AppError(500, "internal", "internal server error");
}

export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const encoding = req.headers["content-encoding"];
    const appErr = toAppError(err, typeof encoding === "string" ? encoding : undefined);
    const reqLog = (req as { log?: Logger }).log ?? log;
    if (appErr.status >= 500) reqLog.error({ err }, "request failed");
    if (res.headersSent) return;
    if (appErr.status === 429 && "retryAfterSec" in appErr) res.setHeader("Retry-After", String(appErr.retryAfterSec));
    if (appErr instanceof MethodNotAllowedError) res.setHeader("Allow", appErr.allow.join(", "));
    // RFC 7694: a 415 for a content coding says which ones the server takes.
    if (appErr instanceof UnsupportedEncodingError) res.setHeader("Accept-Encoding", ACCEPTED_ENCODINGS.join(", "));
    res.status(appErr.status).json(appErr.toJSON());
  };
}
