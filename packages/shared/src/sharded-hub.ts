import net from "node:net";
import tls from "node:tls";
import type { Cluster } from "ioredis";
import { keySlot } from "./key-slot.ts";
import { shardLostMsOf } from "./config.ts";
import type { Logger } from "./logger.ts";
import { encodeCommand } from "./redis-writer.ts";
import { parseResp, RespError, type RespValue } from "./resp.ts";
import type { ChannelHandler } from "./subscriber-hub.ts";

interface Placed {
  shard: Shard;
  /** Resolves once the shard confirmed the SSUBSCRIBE. */
  confirmed: Promise<void>;
}

interface Shard {
  key: string;
  socket: net.Socket | null;
  ready: boolean;
  /** Commands sent, awaiting their reply, in order: the channel and what to do with the answer. */
  pending: { kind: "ssubscribe" | "sunsubscribe"; channel: string; resolve(): void; reject(err: Error): void }[];
  retry: NodeJS.Timeout | null;
  attempt: number;
  /** performance.now() when the connection was lost (and not back since); null while it is up. */
  downSince: number | null;
  /** Commands waiting for the connection. */
  queue: Buffer[];
}

/**
 * The subscriber hub on a Redis Cluster: sharded pub/sub (SSUBSCRIBE), one
 * subscriber connection per primary, each channel on the primary that owns its
 * slot, so a session's traffic touches one shard. The slot map is the command
 * connection's (`cluster`, an ioredis Cluster).
 *
 * A channel's slot can move (a failover promotes a replica; a resharding
 * migrates the slot). Redis then ends the subscription itself (an unasked
 * SUNSUBSCRIBE) or the connection drops; the channel is subscribed again where
 * the slot now is, and `onReconnect` listeners run so each session fills what
 * it missed from the replay log, as after a reconnect on a single Redis.
 */
export function createShardedHub(cluster: Cluster, log: Logger) {
  const handlers = new Map<string, Set<ChannelHandler>>();
  const placed = new Map<string, Placed>();
  const shards = new Map<string, Shard>();
  const reconnectListeners = new Set<() => void>();
  const lostListeners = new Map<string, Set<() => void>>();
  const lostMs = shardLostMsOf(cluster);
  let lostTimer: NodeJS.Timeout | null = null;
  let refreshPoll: NodeJS.Timeout | null = null;

  /**
   * While a wanted channel is not subscribed on a reachable primary, the slot map is asked again
   * every 200 ms rather than at the periodic refresh: a replica promoted is used within a fraction
   * of a second, so little input published to it meanwhile (with no subscriber yet) is lost.
   */
  function pollRefresh(): void {
    if (refreshPoll || closed) return;
    refreshPoll = setInterval(() => {
      let waiting = false;
      for (const ch of handlers.keys()) {
        if (!placed.get(ch)?.shard.ready) {
          waiting = true;
          break;
        }
      }
      if (!waiting || closed) {
        if (refreshPoll) clearInterval(refreshPoll);
        refreshPoll = null;
        return;
      }
      cluster.refreshSlotsCache();
    }, 200);
    refreshPoll.unref();
  }

  /**
   * While any shard is down: a channel whose slot still has no reachable primary after
   * `lostMs` (no replica was promoted: the whole shard is gone) is reported lost, once.
   */
  function watchLost(): void {
    if (lostTimer || closed) return;
    lostTimer = setInterval(() => {
      const down = [...shards.values()].filter((s) => s.downSince !== null);
      if (down.length === 0 || closed) {
        if (lostTimer) clearInterval(lostTimer);
        lostTimer = null;
        return;
      }
      const t = performance.now();
      for (const [channel, ls] of lostListeners) {
        const p = placed.get(channel);
        if (p?.shard.ready) continue;
        const owner = ownerOf(channel);
        const s = owner ? shards.get(owner) : undefined;
        if (!s || s.downSince === null || t - s.downSince < lostMs) continue;
        lostListeners.delete(channel);
        log.error({ node: s.key, channel, down_ms: Math.round(t - s.downSince) }, "redis subscriber: the shard of this channel is unreachable and no replica took over: giving the session up");
        for (const l of ls) l();
      }
    }, Math.min(1000, Math.max(100, lostMs / 5)));
    lostTimer.unref();
  }
  const ro = cluster.options.redisOptions ?? {};
  const name = typeof ro.connectionName === "string" ? ro.connectionName : "molecule:sub";
  let closed = false;
  let replaceScheduled = false;

  const ownerOf = (channel: string): string | null => cluster.slots[keySlot(channel)]?.[0] ?? null;

  function shardFor(key: string): Shard {
    let s = shards.get(key);
    if (!s) {
      s = { key, socket: null, ready: false, pending: [], retry: null, attempt: 0, queue: [], downSince: null };
      shards.set(key, s);
      connect(s);
    }
    return s;
  }

  function connect(s: Shard): void {
    if (closed) return;
    const i = s.key.lastIndexOf(":");
    const host = s.key.slice(0, i);
    const port = Number(s.key.slice(i + 1));
    const sock = ro.tls ? tls.connect({ host, port, ...ro.tls }) : net.connect({ host, port });
    s.socket = sock;
    sock.setNoDelay(true);
    let handshake = 0;
    let buf: Buffer = Buffer.alloc(0);
    sock.once(ro.tls ? "secureConnect" : "connect", () => {
      const cmds: string[][] = [];
      if (ro.password) cmds.push(ro.username ? ["AUTH", ro.username, ro.password] : ["AUTH", ro.password]);
      cmds.push(["CLIENT", "SETNAME", name]);
      handshake = cmds.length;
      for (const c of cmds) sock.write(encodeCommand(c));
    });
    sock.on("data", (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      let at = 0;
      try {
        for (;;) {
          const r = parseResp(buf, at);
          if (!r) break;
          at = r.end;
          if (handshake > 0) {
            if (r.value instanceof RespError) {
              log.error({ node: s.key, error: r.value.message }, "redis subscriber: a node refused the connection set-up (credentials or ACL?)");
              sock.destroy();
              return;
            }
            if (--handshake === 0) becomeReady(s);
            continue;
          }
          onValue(s, r.value);
        }
      } catch (err) {
        log.warn({ err, node: s.key }, "redis subscriber: unreadable reply");
        sock.destroy();
        return;
      }
      buf = buf.subarray(at);
    });
    sock.on("error", (err) => log.debug({ err, node: s.key }, "redis subscriber: connection error"));
    sock.on("close", () => {
      if (s.socket === sock) s.socket = null;
      const was = s.ready;
      s.ready = false;
      s.downSince ??= performance.now();
      watchLost();
      for (const p of s.pending.splice(0)) p.reject(new Error("redis subscriber connection lost"));
      s.queue = [];
      // Its channels are placed again, on this node once it is back or on whichever node owns them now.
      let lost = 0;
      for (const [ch, p] of placed) {
        if (p.shard === s) {
          placed.delete(ch);
          lost++;
        }
      }
      if (was) log.warn({ node: s.key, channels: lost }, "redis subscriber: connection lost");
      if (closed) return;
      cluster.refreshSlotsCache();
      pollRefresh();
      if (lost) scheduleReplace();
      s.retry = setTimeout(() => connect(s), Math.min(50 * ++s.attempt, 1000));
      s.retry.unref();
    });
  }

  function becomeReady(s: Shard): void {
    s.ready = true;
    s.attempt = 0;
    s.downSince = null;
    const q = s.queue;
    s.queue = [];
    for (const c of q) s.socket?.write(c);
  }

  function onValue(s: Shard, v: RespValue): void {
    if (v instanceof RespError) {
      // A subscription refused (MOVED: the slot is elsewhere): placed again after a map refresh.
      const p = s.pending.shift();
      p?.reject(new Error(v.message));
      if (p) {
        if (placed.get(p.channel)?.shard === s) placed.delete(p.channel);
        cluster.refreshSlotsCache();
        scheduleReplace();
      }
      return;
    }
    if (!Array.isArray(v)) return;
    const kind = String(v[0]);
    const channel = v[1] instanceof Buffer ? v[1].toString("latin1") : String(v[1]);
    if (kind === "smessage") {
      const hs = handlers.get(channel);
      const msg = v[2];
      if (hs && msg instanceof Buffer) for (const h of hs) h(msg);
      return;
    }
    const head = s.pending[0];
    if (head && head.kind === kind && head.channel === channel) {
      s.pending.shift();
      head.resolve();
      return;
    }
    if (kind === "sunsubscribe" && placed.get(channel)?.shard === s) {
      // Not asked for: the slot left this node (resharding, or a failover demoted it).
      placed.delete(channel);
      log.info({ node: s.key, channel }, "redis subscriber: the slot moved; subscribing where it is now");
      cluster.refreshSlotsCache();
      scheduleReplace();
    }
  }

  function command(s: Shard, kind: "ssubscribe" | "sunsubscribe", channel: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      s.pending.push({ kind, channel, resolve, reject });
      const c = encodeCommand([kind.toUpperCase(), channel]);
      if (s.ready && s.socket) s.socket.write(c);
      else s.queue.push(c);
    });
  }

  /** Subscribes `channel` on the node that owns its slot now (or waits for the map to say). */
  function place(channel: string): Promise<void> {
    const existing = placed.get(channel);
    if (existing) return existing.confirmed;
    const owner = ownerOf(channel);
    if (!owner) {
      cluster.refreshSlotsCache();
      return new Promise<void>((resolve) => cluster.once("refresh", resolve)).then(() => (handlers.has(channel) ? place(channel) : undefined));
    }
    const shard = shardFor(owner);
    const confirmed = command(shard, "ssubscribe", channel);
    placed.set(channel, { shard, confirmed });
    // A refusal or a lost connection is handled by re-placing (scheduleReplace): not the caller's failure.
    return confirmed.catch(() => waitPlaced(channel));
  }

  /** After a failure: resolves once the channel is subscribed somewhere (or nobody wants it any more). */
  async function waitPlaced(channel: string): Promise<void> {
    while (!closed && handlers.has(channel)) {
      const p = placed.get(channel);
      if (p && p.shard.ready) {
        try {
          await p.confirmed;
          return;
        } catch {
          // refused or lost again: the next re-place tries once more
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Every wanted channel that is not on the node owning its slot goes there; then sessions fill their gaps. */
  function scheduleReplace(): void {
    if (replaceScheduled || closed) return;
    replaceScheduled = true;
    setTimeout(() => {
      replaceScheduled = false;
      void replaceAll();
    }, 50).unref();
  }

  async function replaceAll(): Promise<void> {
    const moves: Promise<void>[] = [];
    for (const channel of handlers.keys()) {
      const p = placed.get(channel);
      const owner = ownerOf(channel);
      if (p && p.shard.key === owner) continue;
      if (p) {
        placed.delete(channel);
        if (p.shard.ready) command(p.shard, "sunsubscribe", channel).catch((err: unknown) => log.debug({ err, channel }, "redis subscriber: unsubscribe from the old node failed (it is going away)"));
      }
      moves.push(place(channel));
    }
    if (moves.length === 0) return;
    await Promise.all(moves);
    log.warn({ channels: moves.length }, "redis subscriber: channels subscribed again after a topology change");
    for (const l of reconnectListeners) l();
  }

  // The command connection quit (shutdown): so do the subscribers.
  cluster.once("end", () => close());

  function close(): void {
    closed = true;
    if (lostTimer) clearInterval(lostTimer);
    if (refreshPoll) clearInterval(refreshPoll);
    for (const s of shards.values()) {
      if (s.retry) clearTimeout(s.retry);
      s.socket?.destroy();
    }
  }

  cluster.on("refresh", () => {
    for (const [channel, p] of placed) {
      if (p.shard.key !== ownerOf(channel)) {
        scheduleReplace();
        return;
      }
    }
  });

  return {
    async subscribe(channel: string, handler: ChannelHandler): Promise<void> {
      let hs = handlers.get(channel);
      if (!hs) {
        hs = new Set();
        handlers.set(channel, hs);
      }
      hs.add(handler);
      if (cluster.status !== "ready") await new Promise<void>((resolve) => cluster.once("ready", () => resolve()));
      await place(channel);
    },
    async unsubscribe(channel: string, handler: ChannelHandler): Promise<void> {
      const hs = handlers.get(channel);
      if (!hs?.delete(handler) || hs.size > 0) return;
      handlers.delete(channel);
      const p = placed.get(channel);
      placed.delete(channel);
      // A failed unsubscribe leaves a channel nobody handles: its messages are dropped here.
      if (p?.shard.ready) await command(p.shard, "sunsubscribe", channel).catch((err: unknown) => log.debug({ err, channel }, "redis sunsubscribe failed"));
    },
    onReconnect(l: () => void): () => void {
      reconnectListeners.add(l);
      return () => reconnectListeners.delete(l);
    },
    onLost(channel: string, l: () => void): () => void {
      let ls = lostListeners.get(channel);
      if (!ls) {
        ls = new Set();
        lostListeners.set(channel, ls);
      }
      ls.add(l);
      return () => {
        ls.delete(l);
        if (ls.size === 0 && lostListeners.get(channel) === ls) lostListeners.delete(channel);
      };
    },
    get channels() {
      return handlers.size;
    },
    close,
  };
}
