import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { z } from "zod";
import { hashToken, ticketKey } from "@molecule/shared";
import type { Principal } from "../auth.ts";

const stored = z.object({ orgId: z.string(), tokenId: z.string(), tokenPrefix: z.string(), workspaceId: z.string() });

/**
 * Single-use, short-lived tickets for browsers (which cannot set Authorization on
 * a WebSocket). Bound to org, workspace and the token that asked; stored hashed.
 */
export function createTickets(redis: Redis, ns: string, ttlSec: number) {
  return {
    async issue(p: Principal, workspaceId: string): Promise<{ ticket: string; expiresAt: Date }> {
      const ticket = `tkt_${randomBytes(24).toString("base64url")}`;
      await redis.set(ticketKey(ns, hashToken(ticket)), JSON.stringify({ ...p, workspaceId }), "EX", ttlSec);
      return { ticket, expiresAt: new Date(Date.now() + ttlSec * 1000) };
    },
    /** Consumes a ticket (GETDEL: a second use fails); null when unknown, used, expired or for another workspace. */
    async consume(ticket: string, workspaceId: string): Promise<Principal | null> {
      if (!/^tkt_[A-Za-z0-9_-]{32}$/.test(ticket)) return null;
      const raw = await redis.getdel(ticketKey(ns, hashToken(ticket)));
      if (!raw) return null;
      const r = stored.safeParse(JSON.parse(raw));
      if (!r.success || r.data.workspaceId !== workspaceId) return null;
      return { orgId: r.data.orgId, tokenId: r.data.tokenId, tokenPrefix: r.data.tokenPrefix };
    },
  };
}
export type Tickets = ReturnType<typeof createTickets>;
