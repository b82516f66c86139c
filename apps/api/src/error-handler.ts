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

/** Maps any thrown error to an AppError (the one JSON error shape every route answers with). */
export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const e = err as { type?: string; status?: number; limit?: number };
  if (e?.type === "entity.too.large") return new PayloadTooLargeError(e.limit ?? 0);
  if (e?.type === "entity.parse.failed") return new BadRequestError("request body is not valid JSON", null, "bad_json");
  if (e?.type === "encoding.unsupported" || e?.type === "charset.unsupported") return new BadRequestError("unsupported body encoding");
  if (causeChain(err).some(isDbUnavailable)) return new UnavailableError("the database is unavailable; try again shortly");
  return new AppError(500, "internal", "internal server error");
}

export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const appErr = toAppError(err);
    const reqLog = (req as { log?: Logger }).log ?? log;
    if (appErr.status >= 500) reqLog.error({ err }, "request failed");
    if (appErr.status === 429 && "retryAfterSec" in appErr) res.setHeader("Retry-After", String(appErr.retryAfterSec));
    if (res.headersSent) return;
    res.status(appErr.status).json(appErr.toJSON());
  };
}
