import { sessionKeys, workerAliveKey, workerConnected, type ByteRedis, type Hub, type Logger } from "@molecule/shared";
import type { Presence } from "./presence.ts";
import type { ControlledSession, SessionControl } from "./session-control.ts";
import { periodic, realTimers, type Timers } from "./timers.ts";

export const VIEWER_TTL_MS = 6000;
const VIEWER_REFRESH_MS = 2000;
const WATCH_MS = 500;
/** How long a worker with a missing heartbeat but open connections is waited for (stalledNotDead). */
const WORKER_STALL_MS = 30_000;

export interface WatchdogDeps {
  redis: ByteRedis;
  hub: Hub;
  log: Logger;
  control: SessionControl;
  /** This node's liveness for presence, and the other nodes' (presence.ts). */
  presence: Pick<Presence, "touch" | "aliveNodes">;
  ns: string;
  nodeId: string;
  workerLostMs: number;
  timers?: Timers;
}

/**
 * Viewer heartbeats out (workers keep a session with a viewer), worker heartbeats in: the
 * sessions of a worker whose heartbeat stays missing end with worker_lost. Runs once started.
 */
export function createWatchdog(d: WatchdogDeps) {
  const timers = d.timers ?? realTimers;
  const missingSince = new Map<string, number>();
  /** Workers already reported as stalled (one warning per stall). */
  const warnedStall = new Set<string>();
  // After a Redis reconnect (maybe a restart that lost every key), workers need a moment to
  // write their heartbeats again: judge no worker lost until then.
  let judgeAfter = 0;
  let lastViewerRefresh = 0;
  let unReconnect: (() => void) | null = null;

  async function watchOnce(): Promise<void> {
    if (d.control.size === 0) return;
    const now = timers.now();
    const live = d.control.live();
    if (now - lastViewerRefresh >= VIEWER_REFRESH_MS && !d.control.isDraining()) {
      lastViewerRefresh = now;
      const pipe = d.redis.pipeline();
      // Only a controller keeps its session from the orphan grace period: viewers watch, they do not hold.
      for (const s of live) if (s.role === "controller") pipe.set(sessionKeys(d.ns, s.sessionId).viewer, d.nodeId, "PX", VIEWER_TTL_MS);
      await Promise.all([pipe.exec(), d.presence.touch(), checkPresenceNodes(live)]);
    }
    const workers = d.control.attachedWorkers();
    if (workers.length === 0) return;
    const pipe = d.redis.pipeline();
    for (const w of workers) pipe.exists(workerAliveKey(d.ns, w));
    const res = (await pipe.exec()) ?? [];
    for (const [i, w] of workers.entries()) {
      const [err, n] = res[i] ?? [new Error("no reply"), 0];
      if (err) continue;
      if (n === 1) {
        missingSince.delete(w);
        warnedStall.delete(w);
        continue;
      }
      if (now < judgeAfter) continue;
      const since = missingSince.get(w) ?? now;
      missingSince.set(w, since);
      if (now - since < d.workerLostMs || (await stalledNotDead(w, now - since))) continue;
      missingSince.delete(w);
      void d.control.workerLost(w);
    }
  }

  /**
   * A node that died announces nothing: sessions here with presence entries of another node read
   * presence again when that node's liveness changed since their last read (gone, or back).
   */
  async function checkPresenceNodes(live: ControlledSession[]): Promise<void> {
    const nodes = new Set<string>();
    for (const s of live) for (const n of s.presenceNodes.keys()) nodes.add(n);
    if (nodes.size === 0) return;
    const alive = await d.presence.aliveNodes(nodes);
    for (const s of live) {
      for (const [n, was] of s.presenceNodes) {
        if (alive.get(n) !== was) {
          s.refreshPresence();
          break;
        }
      }
    }
  }

  /**
   * A heartbeat can be late without the worker being dead: a burst of shells
   * starting at once can starve it of CPU for seconds. Its Redis connections
   * close the moment its process dies, so while they are open it gets up to
   * WORKER_STALL_MS more before its sessions are given up.
   */
  async function stalledNotDead(workerId: string, missingMs: number): Promise<boolean> {
    if (missingMs >= WORKER_STALL_MS) return false;
    if (!(await workerConnected(d.redis, d.ns, workerId))) return false;
    if (!warnedStall.has(workerId)) {
      warnedStall.add(workerId);
      d.log.warn({ worker_id: workerId, missing_ms: missingMs }, "worker heartbeat late, but its connections are open: waiting");
    }
    return true;
  }

  // Rounds only while the node holds sessions: the last round that finds none stops the timer,
  // and the first session starts it again (sessions()).
  let started = false;
  const loop = periodic(
    timers,
    WATCH_MS,
    async () => {
      if (d.control.size === 0) return loop.stop();
      await watchOnce();
    },
    (err) => d.log.debug({ err }, "watchdog round failed"),
  );

  return {
    /** One round, as the timer runs it (tests drive it directly). */
    watchOnce,
    start(): void {
      unReconnect ??= d.hub.onReconnect(() => {
        missingSince.clear();
        judgeAfter = timers.now() + d.workerLostMs + 2000;
        lastViewerRefresh = 0;
      });
      started = true;
      if (d.control.size > 0) loop.start();
    },
    /** The node's session count changed (session-control.ts). */
    sessions(n: number): void {
      if (started && n > 0) loop.start();
    },
    stop(): void {
      started = false;
      loop.stop();
      unReconnect?.();
      unReconnect = null;
    },
  };
}
export type Watchdog = ReturnType<typeof createWatchdog>;
