import { randomUUID } from "node:crypto";
import { z } from "zod";
import { apiNodeAliveKey, type ByteRedis, type Logger, type PresenceEntry, type RedisWriter, type SessionKeys, type ViewersMessage } from "@molecule/shared";

export type Role = "controller" | "viewer";

/** How long the attached set outlives its last change (a node that died leaves its entries until then, unshown). */
const ATTACHED_TTL_MS = 13 * 3600_000;
/** An API node's liveness key lives this long after its last refresh... */
export const NODE_ALIVE_TTL_MS = 10_000;
/** ...which comes at most this often (joins, and the watchdog's rounds while the node holds sessions). */
const NODE_ALIVE_REFRESH_MS = 1000;

const entry = z.object({
  role: z.enum(["controller", "viewer"]),
  label: z.string().nullable(),
  address: z.string().nullable(),
  since: z.string(),
  /** The API node holding the connection; absent in entries written before nodes were recorded (shown). */
  node: z.string().optional(),
});
export type AttachedEntry = z.infer<typeof entry>;

export interface PresenceDeps {
  redis: ByteRedis;
  writer: RedisWriter;
  log: Logger;
  ns: string;
  nodeId: string;
  now?: () => number;
}

/** What a presence read found: the message, and the other nodes with entries (alive or not). */
export interface PresenceRead {
  message: ViewersMessage;
  nodes: ReadonlyMap<string, boolean>;
}

/**
 * Who is attached to a session, across API nodes: a hash per session (one field per connection)
 * and a channel that says it changed; each node reads the hash again and tells its clients.
 * Entries name their node; a node that died (its liveness key expired) leaves entries that are
 * not shown, and the watchdog of each node still attached reads presence again when it sees
 * such a node go (aliveNodes), since a dead node announces nothing.
 */
export function createPresence(d: PresenceDeps) {
  const now = d.now ?? (() => performance.now());
  let touchedAt = Number.NEGATIVE_INFINITY;

  /** This node's liveness key, refreshed unless it was within the last second. */
  async function touch(): Promise<void> {
    const t = now();
    if (t - touchedAt < NODE_ALIVE_REFRESH_MS) return;
    touchedAt = t;
    await d.redis.set(apiNodeAliveKey(d.ns, d.nodeId), "1", "PX", NODE_ALIVE_TTL_MS).catch((err: unknown) => {
      touchedAt = Number.NEGATIVE_INFINITY;
      throw err;
    });
  }

  /** Which of `nodes` are alive (one EXISTS each, on whatever shard holds it). */
  async function aliveNodes(nodes: Iterable<string>): Promise<Map<string, boolean>> {
    const list = [...nodes];
    const found = await Promise.all(list.map((n) => d.redis.exists(apiNodeAliveKey(d.ns, n))));
    return new Map(list.map((n, i) => [n, found[i] === 1]));
  }

  async function join(keys: SessionKeys, e: Omit<AttachedEntry, "node">): Promise<string> {
    const id = randomUUID();
    // Alive before anyone can read the entry, or others would take it for a dead node's.
    await Promise.all([touch(), d.redis.multi().hset(keys.attached, id, JSON.stringify({ ...e, node: d.nodeId })).pexpire(keys.attached, ATTACHED_TTL_MS).exec()]);
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

  /** The session's presence as the protocol's `viewers` message (invalid entries and dead nodes' are skipped). */
  async function read(keys: SessionKeys): Promise<PresenceRead> {
    const all = await d.redis.hgetall(keys.attached);
    const entries: AttachedEntry[] = [];
    for (const raw of Object.values(all)) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw.toString());
      } catch {
        continue; // not ours: presence is advisory, the next change rewrites it
      }
      const r = entry.safeParse(parsed);
      if (r.success) entries.push(r.data);
    }
    const others = new Set(entries.map((e) => e.node).filter((n): n is string => n !== undefined && n !== d.nodeId));
    const nodes = others.size > 0 ? await aliveNodes(others) : new Map<string, boolean>();
    const viewers: PresenceEntry[] = [];
    let controller: PresenceEntry | null = null;
    for (const { role, node, ...who } of entries) {
      if (node !== undefined && nodes.get(node) === false) continue;
      if (role === "viewer") viewers.push(who);
      else if (!controller || who.since > controller.since) controller = who;
    }
    viewers.sort((a, b) => a.since.localeCompare(b.since));
    return { message: { type: "viewers", count: viewers.length, viewers, controller }, nodes };
  }

  return { join, leave, read, touch, aliveNodes };
}
export type Presence = ReturnType<typeof createPresence>;
