/** The error hierarchy both apps throw. `code` is machine-readable; `status` is the HTTP status. */
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: unknown = null,
  ) {
    super(message);
    this.name = new.target.name;
  }
  toJSON() {
    return { error: { code: this.code, message: this.message, details: this.details } };
  }
}

export class BadRequestError extends AppError {
  constructor(message: string, details: unknown = null, code = "bad_request") {
    super(400, code, message, details);
  }
}
export class UnauthorizedError extends AppError {
  constructor(message = "missing or invalid bearer token") {
    super(401, "unauthorized", message);
  }
}
export class ForbiddenError extends AppError {
  constructor(message: string) {
    super(403, "forbidden", message);
  }
}
export class NotFoundError extends AppError {
  constructor(what = "workspace") {
    super(404, "not_found", `${what} not found`);
  }
}
export class ConflictError extends AppError {
  constructor(message: string, details: unknown = null) {
    super(409, "conflict", message, details);
  }
}
export class PayloadTooLargeError extends AppError {
  constructor(limit: number) {
    super(413, "payload_too_large", `request body is larger than ${limit} bytes`, { limit });
  }
}
export class UnsupportedMediaTypeError extends AppError {
  constructor() {
    super(415, "unsupported_media_type", "request body must be application/json");
  }
}
export class RateLimitedError extends AppError {
  constructor(message: string, readonly retryAfterSec: number) {
    super(429, "rate_limited", message, { retry_after_seconds: retryAfterSec });
  }
}
export class UnavailableError extends AppError {
  constructor(message: string) {
    super(503, "unavailable", message);
  }
}

/** Errors raised by the postgres driver when the database cannot be reached. */
export function isDbUnavailable(err: unknown): boolean {
  const e = err as { code?: string; errno?: string; message?: string } | null;
  if (!e) return false;
  const code = e.code ?? e.errno ?? "";
  return (
    ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "CONNECT_TIMEOUT", "CONNECTION_CLOSED", "CONNECTION_ENDED", "CONNECTION_DESTROYED", "EHOSTUNREACH", "ENOTFOUND", "57P01", "57P03", "53300"].includes(code)
  );
}

/**
 * The one way a failure is let go (docs/development.md, "Errors"): logged with the error
 * itself (pino keeps the stack) at the level its consequence deserves, never dropped.
 * For best-effort steps whose failure changes nothing for the user (a TTL cleans up
 * anyway, a retry follows): `promise.catch(logged(log, "debug", "what did not happen"))`.
 */
export function logged(
  log: { [L in "debug" | "info" | "warn" | "error"]: (obj: object, msg: string) => void },
  level: "debug" | "info" | "warn" | "error",
  msg: string,
  fields: Record<string, unknown> = {},
): (err: unknown) => void {
  return (err) => log[level]({ ...fields, err }, msg);
}

/** PostgreSQL notices (e.g. "database does not exist, skipping") are the server talking, not failures. */
export const ignoreNotice = (_notice: unknown): void => undefined;
