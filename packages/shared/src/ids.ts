import { z } from "zod";

/** Strict id patterns: ids are checked against these before they reach a query, a key or an argv. */
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
export const INSTANCE_ID_RE = /^i-[0-9a-f]{8,17}$/;
export const CONTAINER_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;
export const OS_USER_RE = /^[a-z_][a-z0-9_-]{0,31}$/;

export const uuidParam = z.string().regex(UUID_RE, "must be a lowercase UUID");

export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}
