import { createHash, randomBytes } from "node:crypto";

export const TOKEN_PREFIX = "mol_";
const TOKEN_RE = /^mol_[A-Za-z0-9_-]{43}$/;

/** 32 random bytes, base64url, with a recognisable prefix (so secret scanners can find leaked ones). */
export function generateToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString("base64url");
}

export function isWellFormedToken(t: string): boolean {
  return TOKEN_RE.test(t);
}

/** Tokens carry 256 bits of entropy, so a plain SHA-256 is a safe at-rest form (no slow KDF needed). */
export function hashToken(t: string): string {
  return createHash("sha256").update(t).digest("hex");
}

/** The short, non-secret part shown in listings and the audit log. */
export function tokenDisplayPrefix(t: string): string {
  return t.slice(0, 12);
}
