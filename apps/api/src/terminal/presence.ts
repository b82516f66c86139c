import { randomUUID } from "node:crypto";
import { z } from "zod";
import type { ByteRedis, Logger, PresenceEntry, RedisWriter, SessionKeys, ViewersMessage } from "@molecule/shared";

export type Role = "controller" | "viewer";

/** How long the attached set outlives its last change (a node that died leaves its entries until then). */
const ATTACHED_TTL_MS = 13 * 3600_000;

const entry = z.object({
  role: z.enum(["controller", "viewer"]),
  label: z.string().nullable(),
  address: z.string().nullable(),
  since: z.string(),
});
export type AttachedEntry = z.infer<typeof entry>;

export interface PresenceDeps {
  redis: ByteRedis;
  writer: RedisWriter;
  log: Logger;
}

/**
 * Who is attached to a session, across API nodes: a hash per session (one field per connection)
 * and a channel that says it changed; each node reads the hash again and tells its clients.
 */
export function createPresence(d: PresenceDeps) {
  async function join(keys: SessionKeys, e: AttachedEntry): Promise<string> {
    const id = randomUUID();
    await d.redis.multi().hset(keys.attached, id, JSON.stringify(e)).pexpire(keys.attached, ATTACHED_TTL_MS).exec();
    announce(keys);
    return id;
  }

  async function leave(keys: SessionKeys, id: string): Promise<void> {
    await d.redis.hdel(keys.attached, id);
    announce(keys);
  }

  function announce(keys: SessionKeys): void {
    if (!d.writer.send(["PUBLISH", keys.presence, "1"])) d.log.warn("presence change not announced: Redis has been unreachable for too long");
  }

  /** The session's presence as the protocol's `viewers` message (invalid entries are skipped). */
  async function read(keys: SessionKeys): Promise<ViewersMessage> {
    const all = await d.redis.hgetall(keys.attached);
    const viewers: PresenceEntry[] = [];
    let controller: PresenceEntry | null = null;
    for (const raw of Object.values(all)) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw.toString());
      } catch {
        continue; // not ours: presence is advisory, the next change rewrites it
      }
      const r = entry.safeParse(parsed);
      if (!r.success) continue;
      const { role, ...who } = r.data;
      if (role === "viewer") viewers.push(who);
      else if (!controller || who.since > controller.since) controller = who;
    }
    viewers.sort((a, b) => a.since.localeCompare(b.since));
    return { type: "viewers", count: viewers.length, viewers, controller };
  }

  return { join, leave, read };
}
export type Presence = ReturnType<typeof createPresence>;
