import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { Queue } from "bullmq";
import { WebSocketServer } from "ws";
import {
  CLOSE,
  SUBPROTOCOL_V1,
  TERMINAL_QUEUE,
  bullPrefix,
  type ByteRedis,
  type Db,
  type Hub,
  type Logger,
  type RedisWriter,
  type TerminalQueueJob,
} from "@molecule/shared";
import type { Authenticator } from "../auth.ts";
import { toAppError } from "../error-handler.ts";
import { createAuditSweeper } from "./audit-sweeper.ts";
import type { Mode } from "./bridge.ts";
import { createSessionControl } from "./session-control.ts";
import { createPresence } from "./presence.ts";
import { createSessionOpener, type OpenMetrics } from "./session-open.ts";
import type { Tickets } from "./tickets.ts";
import type { Timers } from "./timers.ts";
import { createUpgradeAuth, patchOversizeClose, refuse } from "./upgrade-auth.ts";
import { createWatchdog } from "./watchdog.ts";

export interface GatewayConfig {
  ns: string;
  nodeId: string;
  windowBytes: number;
  maxFrameBytes: number;
  claimTimeoutMs: number;
  inputBytesPerSec: number;
  inputMsgsPerSec: number;
  workerLostMs: number;
  allowedOrigins: string[];
}

export interface GatewayDeps {
  db: Db;
  redis: ByteRedis;
  /** BullMQ's connection (app.ts: one of its own, so its scripts do not slow every MULTI on `redis`). */
  queueRedis: ByteRedis;
  writer: RedisWriter;
  hub: Hub;
  auth: Authenticator;
  tickets: Tickets;
  log: Logger;
  config: GatewayConfig;
  metrics?: OpenMetrics & { active(n: number): void };
  /** The watchdog's and the sweeper's timers and clock (real ones by default). */
  timers?: Timers;
}

/**
 * The terminal WebSocket endpoint of one API node, wired from its parts: upgrade-auth.ts
 * (checks before the upgrade), session-open.ts (new session or re-attach), session-control.ts
 * (the sessions this node holds, cancel, audit closes), watchdog.ts (worker_lost) and
 * audit-sweeper.ts. Nothing runs on a timer until start().
 */
export function createTerminalGateway(d: GatewayDeps) {
  const c = d.config;
  const queue = new Queue<TerminalQueueJob>(TERMINAL_QUEUE, { connection: d.queueRedis, prefix: bullPrefix(c.ns) });
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: c.maxFrameBytes,
    perMessageDeflate: false,
    // Invalid UTF-8 in a text frame is answered with bad_message by the bridge, not closed with 1007.
    skipUTF8Validation: true,
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL_V1) ? SUBPROTOCOL_V1 : false),
  });
  // The watchdog runs only while this node holds sessions (an idle node does not wake for it).
  let watchdogRef: { sessions(n: number): void } | null = null;
  const control = createSessionControl({
    db: d.db,
    redis: d.redis,
    queue,
    log: d.log,
    ns: c.ns,
    active: (n) => {
      d.metrics?.active(n);
      watchdogRef?.sessions(n);
    },
  });
  const upgradeAuth = createUpgradeAuth({ db: d.db, auth: d.auth, tickets: d.tickets, allowedOrigins: c.allowedOrigins, isDraining: control.isDraining });
  const presence = createPresence({ redis: d.redis, writer: d.writer, log: d.log, ns: c.ns, nodeId: c.nodeId });
  const opener = createSessionOpener({ db: d.db, redis: d.redis, writer: d.writer, hub: d.hub, log: d.log, queue, control, presence, config: c, metrics: d.metrics });
  const watchdog = createWatchdog({ redis: d.redis, hub: d.hub, log: d.log, control, presence, ns: c.ns, nodeId: c.nodeId, workerLostMs: c.workerLostMs, timers: d.timers });
  watchdogRef = watchdog;
  const sweeper = createAuditSweeper({ db: d.db, redis: d.redis, log: d.log, control, ns: c.ns, claimTimeoutMs: c.claimTimeoutMs, timers: d.timers });

  /** The HTTP server's `upgrade` handler. */
  async function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const t0 = performance.now();
    // A peer resetting mid-handshake is not ours to report (the request's outcome is logged
    // below), but an error listener must exist or the reset would crash the process.
    socket.on("error", (err) => d.log.debug({ err }, "client socket error during the upgrade"));
    try {
      const { principal, workspace, query } = await upgradeAuth.admit(req);
      wss.handleUpgrade(req, socket, head, (sock) => {
        patchOversizeClose(sock, c.maxFrameBytes);
        const mode: Mode = sock.protocol === SUBPROTOCOL_V1 ? "v1" : "raw";
        void opener.open(sock, mode, req, principal, workspace, query, t0).catch((err) => {
          d.log.error({ err }, "terminal open failed");
          if (sock.readyState === sock.OPEN) sock.close(CLOSE.internal, "internal");
        });
      });
    } catch (err) {
      const e = toAppError(err);
      if (e.status >= 500) d.log.error({ err }, "terminal upgrade failed");
      refuse(socket, e);
    }
  }

  return {
    handleUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void handleUpgrade(req, socket, head),
    endWorkspaceSessions: control.endWorkspaceSessions,
    sweep: sweeper.sweep,
    /** One watchdog round (the timer runs them once started). */
    watchOnce: watchdog.watchOnce,
    get sessions() {
      return control.size;
    },
    isDraining: control.isDraining,
    /** Starts the watchdog and the audit sweeper (the API starts them when it listens). */
    start(): void {
      watchdog.start();
      sweeper.start();
    },
    /** Graceful shutdown: every client gets 1012 and re-attaches to the same shell through another node. */
    async drain(): Promise<void> {
      control.drain();
    },
    async close(): Promise<void> {
      watchdog.stop();
      sweeper.stop();
      control.drainAll();
      for (const s of wss.clients) s.terminate();
      wss.close();
      await queue.close();
    },
  };
}
export type TerminalGateway = ReturnType<typeof createTerminalGateway>;
