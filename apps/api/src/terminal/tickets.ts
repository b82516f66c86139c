import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { z } from "zod";
import { hashToken, ticketKey } from "@molecule/shared";
import type { Principal } from "../auth.ts";

/**
 * GETDEL only when the ticket is for this workspace, in one step: a ticket tried on another
 * workspace (by mistake, or by someone who saw it) stays usable by its owner until it expires.
 */
const CONSUME_LUA = `
local raw = redis.call("GET", KEYS[1])
if not raw then return false end
local ok, t = pcall(cjson.decode, raw)
if not ok or type(t) ~= "table" or t.workspaceId ~= ARGV[1] then return false end
redis.call("DEL", KEYS[1])
return raw
`;

const stored = z.object({ orgId: z.string(), tokenId: z.string(), tokenPrefix: z.string(), workspaceId: z.string(), viewOnly: z.boolean().optional() });

/**
 * Single-use, short-lived tickets for browsers (which cannot set Authorization on
 * a WebSocket). Bound to org, workspace and the token that asked; stored hashed.
 */
export function createTickets(redis: Redis, ns: string, ttlSec: number) {
  return {
    /** `viewOnly`: the ticket opens only a viewer (mode=view) of an existing session. */
    async issue(p: Principal, workspaceId: string, viewOnly = false): Promise<{ ticket: string; expiresAt: Date }> {
      const ticket = `tkt_${randomBytes(24).toString("base64url")}`;
      await redis.set(ticketKey(ns, hashToken(ticket)), JSON.stringify({ ...p, workspaceId, ...(viewOnly ? { viewOnly } : {}) }), "EX", ttlSec);
      return { ticket, expiresAt: new Date(Date.now() + ttlSec * 1000) };
    },
    /**
     * Consumes a ticket for `workspaceId` (a second use fails); null when unknown, used, expired
     * or for another workspace, and then a ticket for another workspace is left as it was.
     */
    async consume(ticket: string, workspaceId: string): Promise<(Principal & { viewOnly: boolean }) | null> {
      if (!/^tkt_[A-Za-z0-9_-]{32}$/.test(ticket)) return null;
      const raw = (await redis.eval(CONSUME_LUA, 1, ticketKey(ns, hashToken(ticket)), workspaceId)) as string | null;
      if (typeof raw !== "string") return null;
      let json: unknown;
      try {
        json = JSON.parse(raw);
      } catch {
        return null;
      }
      const r = stored.safeParse(json);
      if (!r.success || r.data.workspaceId !== workspaceId) return null;
      return { orgId: r.data.orgId, tokenId: r.data.tokenId, tokenPrefix: r.data.tokenPrefix, viewOnly: r.data.viewOnly ?? false };
    },
  };
}
export type Tickets = ReturnType<typeof createTickets>;
