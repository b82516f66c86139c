import { once } from "node:events";
import type { Cluster, Redis } from "ioredis";
import { isCluster } from "./config.ts";
import { logged } from "./errors.ts";
import type { Logger } from "./logger.ts";
import { createShardedHub } from "./sharded-hub.ts";

export type ChannelHandler = (msg: Buffer) => void;

/**
 * One subscriber connection per process, shared by every session: channels are
 * (un)subscribed as sessions come and go, and messages dispatched by channel.
 * After a reconnect (ioredis resubscribes by itself), `onReconnect` listeners run
 * once the subscriptions hold again, so each session can fill any gap: output from the
 * replay log, input by a resync (the worker's session asks for it again). Pub/sub
 * losses cost latency, never bytes.
 */
export function createHub(sub: Redis, log: Logger): Hub {
  // On a cluster, per-session channels are sharded (SSUBSCRIBE on the slot's primary): sharded-hub.ts.
  if (isCluster(sub)) return createShardedHub(sub as unknown as Cluster, log);
  return createSingleHub(sub, log);
}

export interface Hub {
  /** Resolves once Redis confirms the subscription, so nothing published afterwards is missed. */
  subscribe(channel: string, handler: ChannelHandler): Promise<void>;
  unsubscribe(channel: string, handler: ChannelHandler): Promise<void>;
  onReconnect(l: () => void): () => void;
  /**
   * Calls `l` once if `channel` can no longer be served: on a cluster, its shard (primary and
   * replicas) unreachable past REDIS_SHARD_LOST_MS. A single Redis never gives up (a restart is
   * waited out). Returns an unsubscribe function.
   */
  onLost(channel: string, l: () => void): () => void;
  readonly channels: number;
}

function createSingleHub(sub: Redis, log: Logger): Hub {
  const handlers = new Map<string, Set<ChannelHandler>>();
  const reconnectListeners = new Set<() => void>();
  // Made after the connection is up (the apps and tests wait for it): its next `ready` is a reconnect.
  let wasReady = sub.status === "ready";

  sub.on("messageBuffer", (channel: Buffer, message: Buffer) => {
    const hs = handlers.get(channel.toString("latin1"));
    if (hs) for (const h of hs) h(message);
  });
  sub.on("ready", () => {
    if (wasReady) {
      log.warn({ channels: handlers.size }, "redis subscriber reconnected");
      // ioredis sends the SUBSCRIBE again right after this event: a PING queued behind it is answered
      // once Redis holds the subscriptions, so what a listener asks for from then on is heard.
      queueMicrotask(() => {
        sub.ping().then(
          () => {
            for (const l of reconnectListeners) l();
          },
          logged(log, "debug", "redis subscriber lost again before it was subscribed (the next reconnect runs the listeners)"),
        );
      });
    }
    wasReady = true;
  });

  return {
    /** Resolves once Redis confirms the subscription, so nothing published afterwards is missed. */
    async subscribe(channel: string, handler: ChannelHandler): Promise<void> {
      let hs = handlers.get(channel);
      if (!hs) {
        hs = new Set();
        handlers.set(channel, hs);
      }
      hs.add(handler);
      // Subscribed before the connection's ready check, that check fails (a subscriber may only
      // subscribe) and the subscription is lost with the reconnect that follows.
      if (sub.status !== "ready") await once(sub, "ready");
      await sub.subscribe(channel);
    },
    async unsubscribe(channel: string, handler: ChannelHandler): Promise<void> {
      const hs = handlers.get(channel);
      if (!hs?.delete(handler) || hs.size > 0) return;
      handlers.delete(channel);
      // A failed unsubscribe leaves a channel nobody handles: its messages are dropped here.
      await sub.unsubscribe(channel).catch(logged(log, "debug", "redis unsubscribe failed", { channel }));
    },
    onReconnect(l: () => void): () => void {
      reconnectListeners.add(l);
      return () => reconnectListeners.delete(l);
    },
    onLost(): () => void {
      // One server: an outage is waited out (sessions fill their gaps once it is back).
      return () => undefined;
    },
    get channels() {
      return handlers.size;
    },
  };
}
