import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { Queue } from "bullmq";
import { and, asc, eq, gt, inArray, isNull, lt, or, sql } from "drizzle-orm";
import { WebSocketServer, type WebSocket } from "ws";
import {
  AppError,
  BadRequestError,
  CLOSE,
  ForbiddenError,
  NotFoundError,
  SUBPROTOCOL_V1,
  TERMINAL_QUEUE,
  UnauthorizedError,
  UnavailableError,
  bullPrefix,
  clientList,
  encodeControl,
  isUuid,
  readOutput,
  schema,
  sessionKeys,
  terminalQuery,
  workerAliveKey,
  workerConnected,
  workerConnectedIn,
  type ByteRedis,
  type Db,
  type EndReason,
  type Hub,
  type Logger,
  type RedisWriter,
  type SessionEnd,
  type TerminalJob,
} from "@molecule/shared";
import type { Authenticator, Principal } from "../auth.ts";
import { bearerToken } from "../auth.ts";
import { toAppError, validationError } from "../error-handler.ts";
import { loadOwned } from "../routes/workspaces.ts";
import { TerminalBridge, type BridgeDeps, type Mode } from "./bridge.ts";
import type { Tickets } from "./tickets.ts";
import { applyOutboxEntries, sessionEnd } from "@molecule/shared";

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
  writer: RedisWriter;
  hub: Hub;
  auth: Authenticator;
  tickets: Tickets;
  log: Logger;
  config: GatewayConfig;
  metrics?: BridgeDeps["metrics"] & { opened(ms: number, kind?: "new" | "reattach"): void; closed(reason: string): void; active(n: number): void };
}

const PATH_RE = /^\/workspaces\/([^/]+)\/terminal\/?$/;
const VIEWER_TTL_MS = 6000;
const VIEWER_REFRESH_MS = 2000;
const WATCH_MS = 500;
/** How long a worker with a missing heartbeat but open connections is waited for (stalledNotDead). */
const WORKER_STALL_MS = 30_000;
const ENDED_TTL_MS = 3600_000;
/** Open audit rows the sweeper reads per query, and judges per sweep (it goes on from there next time). */
const SWEEP_PAGE = 500;
const SWEEP_MAX_ROWS = 5000;

/**
 * A client that offers subprotocols and none of ours would get an upgrade without one, which it
 * (browsers, ws) then drops, orphaning the shell it started: refuse it before anything exists.
 * No header at all is legacy raw mode.
 */
function checkSubprotocols(req: IncomingMessage): void {
  const header = req.headers["sec-websocket-protocol"];
  if (header === undefined) return;
  const offered = header.split(",").map((p) => p.trim()).filter(Boolean);
  if (offered.includes(SUBPROTOCOL_V1)) return;
  throw new BadRequestError(
    `none of the offered subprotocols is supported; offer ${SUBPROTOCOL_V1}, or none for legacy raw mode`,
    { offered: offered.slice(0, 8).map((p) => p.slice(0, 64)), supported: [SUBPROTOCOL_V1] },
    "unsupported_subprotocol",
  );
}

/** Writes an HTTP error on a socket that has not been upgraded: the same JSON body as the REST API. */
function refuse(socket: Duplex, err: AppError): void {
  const body = JSON.stringify(err.toJSON());
  const reason = { 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 503: "Service Unavailable" }[err.status] ?? "Error";
  socket.end(
    `HTTP/1.1 ${err.status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * The terminal WebSocket endpoint of one API node: authenticates before the
 * upgrade, creates or re-attaches sessions, and watches the workers of the
 * sessions it holds (worker_lost) while telling workers a viewer is attached.
 */
export function createTerminalGateway(d: GatewayDeps) {
  const c = d.config;
  const queue = new Queue<TerminalJob>(TERMINAL_QUEUE, { connection: d.redis, prefix: bullPrefix(c.ns) });
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: c.maxFrameBytes,
    perMessageDeflate: false,
    // Invalid UTF-8 in a text frame is answered with bad_message by the bridge, not closed with 1007.
    skipUTF8Validation: true,
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL_V1) ? SUBPROTOCOL_V1 : false),
  });
  const bridges = new Set<TerminalBridge>();
  let draining = false;

  const bridgeDeps: BridgeDeps = {
    redis: d.redis,
    writer: d.writer,
    hub: d.hub,
    log: d.log,
    windowBytes: c.windowBytes,
    claimTimeoutMs: c.claimTimeoutMs,
    inputBytesPerSec: c.inputBytesPerSec,
    inputMsgsPerSec: c.inputMsgsPerSec,
    metrics: d.metrics,
    cancel: (sessionId, reason) => cancelSession(sessionId, reason),
    detached: (b) => {
      // Start the orphan grace period now rather than when the viewer key expires.
      if (!draining) void d.redis.del(sessionKeys(c.ns, b.sessionId).viewer).catch(() => {});
    },
    closed: (b) => {
      bridges.delete(b);
      d.metrics?.active(bridges.size);
    },
  };

  /** The bridge's metrics, timing this socket's open from the upgrade (t0) to its hello. */
  function timedMetrics(t0: number, kind: "new" | "reattach"): BridgeDeps["metrics"] {
    const m = d.metrics;
    return m && { ...m, attached: () => m.opened(performance.now() - t0, kind) };
  }

  async function cancelSession(sessionId: string, reason: EndReason): Promise<void> {
    const k = sessionKeys(c.ns, sessionId);
    // Key first, then the message: a worker that (re)subscribes or claims later still sees it.
    await d.redis.set(k.cancel, reason, "PX", ENDED_TTL_MS);
    await d.redis.publish(k.in, encodeControl({ t: "cancel", reason }));
    if (reason === "client_closed" || reason === "no_capacity") {
      // Not claimed yet: take the job back so it does not occupy a worker; close its audit row here.
      const removed = await queue.remove(sessionId).catch(() => 0);
      if (removed) await closeAudit(sessionId, reason);
    }
  }

  /**
   * Closes a row the API is the last word on: never claimed (`heldBy` null), or held by a worker
   * that is gone. A row another worker holds is never touched.
   */
  async function closeAudit(sessionId: string, reason: EndReason, heldBy: string | null = null): Promise<void> {
    const t = schema.terminalSessions;
    await d.db
      .update(t)
      .set({ closedAt: sql`now()` as unknown as Date, closeReason: reason })
      .where(and(eq(t.id, sessionId), isNull(t.closedAt), heldBy === null ? isNull(t.workerId) : eq(t.workerId, heldBy)));
  }

  /**
   * A lost worker's session: the close it could not write (PostgreSQL was down when the session
   * ended) is in the outbox with the real reason, bytes and time; worker_lost only without one.
   */
  async function closeLost(sessionId: string, workerId: string): Promise<void> {
    const applied = await applyOutboxEntries(d.db, d.redis, c.ns, [sessionId], d.log);
    if (!applied.has(sessionId)) await closeAudit(sessionId, "worker_lost", workerId);
  }

  function originAllowed(req: IncomingMessage): boolean {
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    if (c.allowedOrigins.includes(origin) || c.allowedOrigins.includes("*")) return true;
    try {
      return new URL(origin).host === req.headers.host;
    } catch {
      return false;
    }
  }

  async function authenticate(req: IncomingMessage, workspaceId: string, ticket: string | undefined): Promise<Principal> {
    const token = bearerToken(req.headers.authorization);
    if (token !== undefined) return d.auth.authenticate(token);
    if (ticket !== undefined) {
      const p = await d.tickets.consume(ticket, workspaceId);
      if (!p) throw new UnauthorizedError("invalid, expired or already used ticket");
      return p;
    }
    throw new UnauthorizedError("a bearer token or a ticket is required");
  }

  /** The HTTP server's `upgrade` handler. */
  async function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const t0 = performance.now();
    socket.on("error", () => {});
    try {
      const url = new URL(req.url ?? "/", "http://x");
      const m = PATH_RE.exec(url.pathname);
      if (!m) throw new NotFoundError("route");
      const workspaceId = m[1]!;
      if (!isUuid(workspaceId)) throw new BadRequestError("workspace id must be a UUID", [{ field: "id" }], "bad_id");
      if (!originAllowed(req)) throw new ForbiddenError(`origin ${req.headers.origin} is not allowed`);
      if (draining) throw new UnavailableError("this API node is shutting down");
      checkSubprotocols(req);
      const q = terminalQuery.safeParse(Object.fromEntries(url.searchParams));
      if (!q.success) throw validationError(q.error, "terminal query");
      const p = await authenticate(req, workspaceId, q.data.ticket);
      const ws = await loadOwned(d.db, p, workspaceId);
      wss.handleUpgrade(req, socket, head, (sock) => {
        patchOversizeClose(sock);
        const mode: Mode = sock.protocol === SUBPROTOCOL_V1 ? "v1" : "raw";
        void open(sock, mode, req, p, ws, q.data, t0).catch((err) => {
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

  /** ws closes an oversized frame with 1009; the protocol says 1008 with a `policy` error first. */
  function patchOversizeClose(sock: WebSocket): void {
    const close = sock.close.bind(sock);
    sock.close = (code?: number, reason?: string | Buffer) => {
      if (code === 1009) {
        if (sock.protocol === SUBPROTOCOL_V1) {
          sock.send(JSON.stringify({ type: "error", code: "policy", message: `frame larger than ${c.maxFrameBytes} bytes` }));
        } else {
          sock.send(`Error: frame larger than ${c.maxFrameBytes} bytes\r\n`);
        }
        return close(CLOSE.policy, "frame too large");
      }
      return close(code, reason);
    };
  }

  function failEarly(sock: WebSocket, mode: Mode, code: keyof typeof CLOSE, message: string): void {
    if (mode === "v1") sock.send(JSON.stringify({ type: "error", code, message }));
    else sock.send(`Error: ${message}\r\n`);
    d.metrics?.closed(code);
    sock.close(CLOSE[code], code);
  }

  async function open(
    sock: WebSocket,
    mode: Mode,
    req: IncomingMessage,
    p: Principal,
    ws: typeof schema.workspaces.$inferSelect,
    q: { cols: number; rows: number; session?: string; offset?: number },
    t0: number,
  ): Promise<void> {
    if (q.session !== undefined) return reattach(sock, mode, p, ws, q.session, q.offset ?? 0, t0);
    if (ws.status !== "ready") {
      return failEarly(sock, mode, "not_ready", `the workspace is ${ws.status}, not ready`);
    }
    const sessionId = randomUUID();
    const k = sessionKeys(c.ns, sessionId);
    const bridge = new TerminalBridge(
      sock,
      { sessionId, workspaceId: ws.id, keys: k, mode, from: 0, cols: q.cols, rows: q.rows, isNew: true, workerId: null, endedAlready: null },
      { ...bridgeDeps, log: d.log.child({ session_id: sessionId, workspace_id: ws.id }), metrics: timedMetrics(t0, "new") },
    );
    bridges.add(bridge);
    d.metrics?.active(bridges.size);
    const now = Date.now();
    // Independent of each other, so in parallel (one round trip, not three); all done before
    // the job exists: the subscription (no output missed), the session state, the audit row.
    await Promise.all([
      bridge.start(),
      d.redis
        .multi()
        .hset(k.meta, { ws: ws.id, org: p.orgId, cols: q.cols, rows: q.rows, state: "pending", created: now })
        .pexpire(k.meta, ENDED_TTL_MS * 24)
        .set(k.viewer, c.nodeId, "PX", VIEWER_TTL_MS)
        .exec(),
      d.db.insert(schema.terminalSessions).values({
        id: sessionId,
        orgId: p.orgId,
        workspaceId: ws.id,
        tokenId: p.tokenId,
        tokenPrefix: p.tokenPrefix,
        clientAddr: clientAddress(req),
        userAgent: req.headers["user-agent"]?.slice(0, 512) ?? null,
        provider: ws.provider,
        instanceId: ws.instanceId,
      }),
    ]);
    await queue.add(
      "session",
      {
        sessionId,
        workspaceId: ws.id,
        orgId: p.orgId,
        cols: q.cols,
        rows: q.rows,
        claimDeadline: now + c.claimTimeoutMs,
        windowBytes: c.windowBytes,
        provider: ws.provider as TerminalJob["provider"],
        instanceId: ws.instanceId,
      },
      { jobId: sessionId, attempts: 1, removeOnComplete: true, removeOnFail: { age: 3600 } },
    );
    bridge.log.info({ mode, open_ms: Math.round(performance.now() - t0) }, "terminal session requested");
  }

  async function reattach(
    sock: WebSocket,
    mode: Mode,
    p: Principal,
    ws: typeof schema.workspaces.$inferSelect,
    session: string,
    offset: number,
    t0: number,
  ): Promise<void> {
    const notFound = () => failEarly(sock, mode, "session_not_found", "no such session for this workspace (unknown, expired or ended)");
    if (!isUuid(session)) return notFound();
    const k = sessionKeys(c.ns, session);
    const meta = await d.redis.hgetall(k.meta);
    if (meta.ws !== ws.id || meta.org !== p.orgId) return notFound();
    // A client cannot have bytes the session never produced: hello says where output really resumes.
    const { lastEnd } = await readOutput(d.redis, k.log, offset, 0, 1);
    if (lastEnd !== null && offset > lastEnd) offset = lastEnd;
    let ended: SessionEnd | null = null;
    if (meta.end) {
      try {
        ended = JSON.parse(meta.end) as SessionEnd;
      } catch {
        ended = null;
      }
    }
    const bridge = new TerminalBridge(
      sock,
      {
        sessionId: session,
        workspaceId: ws.id,
        keys: k,
        mode,
        from: offset,
        cols: Number(meta.cols) || 80,
        rows: Number(meta.rows) || 24,
        isNew: meta.state === "pending",
        workerId: meta.worker ?? null,
        endedAlready: ended,
      },
      { ...bridgeDeps, log: d.log.child({ session_id: session, workspace_id: ws.id }), metrics: timedMetrics(t0, "reattach") },
    );
    bridges.add(bridge);
    d.metrics?.active(bridges.size);
    await d.redis.set(k.viewer, c.nodeId, "PX", VIEWER_TTL_MS);
    await bridge.start();
    bridge.log.info({ mode, offset }, "terminal re-attached");
  }

  // ---- watchdog: viewer heartbeats out, worker heartbeats in ------------------------------

  const missingSince = new Map<string, number>();
  /** Workers already reported as stalled (one warning per stall). */
  const warnedStall = new Set<string>();
  // After a Redis reconnect (maybe a restart that lost every key), workers need a moment to
  // write their heartbeats again: judge no worker lost until then.
  let judgeAfter = 0;
  d.hub.onReconnect(() => {
    missingSince.clear();
    judgeAfter = Date.now() + c.workerLostMs + 2000;
    lastViewerRefresh = 0;
  });
  let lastViewerRefresh = 0;
  let watching = false;
  const watch = setInterval(() => {
    if (watching) return;
    watching = true;
    void watchOnce()
      .catch((err) => d.log.debug({ err }, "watchdog round failed"))
      .finally(() => {
        watching = false;
      });
  }, WATCH_MS);
  watch.unref();

  async function watchOnce(): Promise<void> {
    if (bridges.size === 0) return;
    const now = Date.now();
    const live = [...bridges].filter((b) => b.state !== "closed");
    if (now - lastViewerRefresh >= VIEWER_REFRESH_MS && !draining) {
      lastViewerRefresh = now;
      const pipe = d.redis.pipeline();
      for (const b of live) pipe.set(sessionKeys(c.ns, b.sessionId).viewer, c.nodeId, "PX", VIEWER_TTL_MS);
      await pipe.exec();
    }
    const workers = [...new Set(live.filter((b) => b.state === "attached" && b.workerId).map((b) => b.workerId!))];
    if (workers.length === 0) return;
    const pipe = d.redis.pipeline();
    for (const w of workers) pipe.exists(workerAliveKey(c.ns, w));
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
      if (now - since < c.workerLostMs || (await stalledNotDead(w, now - since))) continue;
      missingSince.delete(w);
      void workerLost(w, live.filter((b) => b.workerId === w));
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
    if (!(await workerConnected(d.redis, c.ns, workerId))) return false;
    if (!warnedStall.has(workerId)) {
      warnedStall.add(workerId);
      d.log.warn({ worker_id: workerId, missing_ms: missingMs }, "worker heartbeat late, but its connections are open: waiting");
    }
    return true;
  }

  async function workerLost(workerId: string, lost: TerminalBridge[]): Promise<void> {
    d.log.warn({ worker_id: workerId, sessions: lost.length }, "terminal worker lost");
    for (const b of lost) {
      b.finish({ reason: "worker_lost", offset: 0 });
      await cancelSession(b.sessionId, "worker_lost").catch((err: unknown) => d.log.warn({ err, session_id: b.sessionId }, "cancelling a lost session failed"));
      await closeLost(b.sessionId, workerId).catch((err: unknown) => d.log.warn({ err, session_id: b.sessionId }, "closing a lost session's audit row failed (the sweeper retries)"));
    }
  }

  /**
   * Where the last sweep stopped: open rows are judged in (opened_at, id) order, a bounded number
   * per sweep, so rows that must wait (no session state here yet) never hide newer ones.
   */
  let sweepFrom: { openedAt: Date; id: string } | null = null;
  /**
   * Closes audit rows nobody else will close: sessions whose worker died while no
   * node watched them, and sessions never claimed. Idempotent; any node may run it.
   */
  async function sweep(): Promise<number> {
    const cutoff = new Date(Date.now() - c.claimTimeoutMs - 5000);
    const t = schema.terminalSessions;
    const open = and(isNull(t.closedAt), lt(t.openedAt, cutoff));
    // Only rows a sweep may close: never claimed, or claimed by a worker that is gone. Liveness is
    // checked once per worker (and CLIENT LIST read at most once), not per row.
    const workers = (await d.db.selectDistinct({ w: t.workerId }).from(t).where(open)).map((r) => r.w).filter((w): w is string => w !== null);
    let list: Promise<string | null> | null = null;
    const dead = async (w: string) => {
      if (await d.redis.exists(workerAliveKey(c.ns, w))) return false;
      list ??= clientList(d.redis);
      const l = await list;
      return l === null || !workerConnectedIn(l, c.ns, w);
    };
    const deadFlags = await Promise.all(workers.map(dead));
    const gone = workers.filter((_, i) => deadFlags[i]);
    const sweepable = and(open, gone.length ? or(isNull(t.workerId), inArray(t.workerId, gone)) : isNull(t.workerId));
    let closed = 0;
    for (let judged = 0; judged < SWEEP_MAX_ROWS; ) {
      const from = sweepFrom;
      const rows = await d.db
        .select({ id: t.id, workerId: t.workerId, openedAt: t.openedAt })
        .from(t)
        .where(and(sweepable, from ? or(gt(t.openedAt, from.openedAt), and(eq(t.openedAt, from.openedAt), gt(t.id, from.id))) : undefined))
        .orderBy(asc(t.openedAt), asc(t.id))
        .limit(SWEEP_PAGE);
      const last = rows[rows.length - 1];
      // At the end of the rows: the next sweep starts again from the oldest.
      sweepFrom = rows.length === SWEEP_PAGE && last ? { openedAt: last.openedAt, id: last.id } : null;
      // Issued together: ioredis pipelines them, one round trip per page instead of per row.
      const states = await Promise.all(rows.map((r) => d.redis.hmget(sessionKeys(c.ns, r.id).meta, "state", "end")));
      // Closes the dead workers wrote to the outbox (PostgreSQL was down at the end) win over worker_lost.
      const fromOutbox = await applyOutboxEntries(d.db, d.redis, c.ns, rows.filter((r) => r.workerId !== null).map((r) => r.id), d.log);
      closed += fromOutbox.size;
      for (const [i, r] of rows.entries()) {
        if (fromOutbox.has(r.id)) continue;
        // Rows whose session state is not in this deployment's Redis (another key prefix on a shared
        // database, or state lost with a Redis restart) are judged only once they are very old.
        const [state = null, end = null] = states[i] ?? [];
        const ancient = r.openedAt.getTime() < Date.now() - 24 * 3600_000;
        if (state === null && !ancient) continue;
        if (r.workerId !== null) {
          await closeAudit(r.id, "worker_lost", r.workerId);
          closed++;
        } else if (state === "pending" || state === null) {
          await closeAudit(r.id, "no_capacity");
          closed++;
        } else if (state === "ended") {
          // Ended before any worker could claim the row (its claim failed): the recorded end says why.
          const e = sessionEnd.safeParse(safeParseJson(end));
          await closeAudit(r.id, e.success ? e.data.reason : "spawn_failed");
          closed++;
        }
      }
      judged += rows.length;
      if (!sweepFrom) break;
    }
    return closed;
  }
  const sweeper = setInterval(() => void sweep().catch((err: unknown) => d.log.warn({ err }, "audit sweep failed (next one in 10 s)")), 10_000);
  sweeper.unref();

  /** Ends every session of a workspace (it is being deleted or restarted). */
  async function endWorkspaceSessions(workspaceId: string): Promise<void> {
    const rows = await d.db
      .select({ id: schema.terminalSessions.id })
      .from(schema.terminalSessions)
      .where(and(eq(schema.terminalSessions.workspaceId, workspaceId), isNull(schema.terminalSessions.closedAt)));
    await Promise.all(rows.map((r) => cancelSession(r.id, "workspace_deleted")));
  }

  return {
    handleUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void handleUpgrade(req, socket, head),
    endWorkspaceSessions,
    sweep,
    get sessions() {
      return bridges.size;
    },
    isDraining: () => draining,
    /** Graceful shutdown: every client gets 1012 and re-attaches to the same shell through another node. */
    async drain(): Promise<void> {
      draining = true;
      for (const b of [...bridges]) b.drain();
    },
    async close(): Promise<void> {
      clearInterval(watch);
      clearInterval(sweeper);
      for (const b of [...bridges]) b.drain();
      for (const s of wss.clients) s.terminate();
      wss.close();
      await queue.close();
    },
  };
}
export type TerminalGateway = ReturnType<typeof createTerminalGateway>;

function safeParseJson(v: string | null): unknown {
  if (v === null) return undefined;
  try {
    return JSON.parse(v);
  } catch {
    // Not JSON: the caller's schema check rejects it.
    return undefined;
  }
}

/** Loopback and private peers are our own load balancers; anyone else could forge X-Forwarded-For. */
const PROXY_PEER = /^(::ffff:)?(127\.|10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.)|^::1$|^f[cd][0-9a-f]{2}:/i;

function clientAddress(req: IncomingMessage): string | null {
  const peer = req.socket.remoteAddress ?? null;
  const xff = req.headers["x-forwarded-for"];
  if (!peer || typeof xff !== "string" || !PROXY_PEER.test(peer)) return peer;
  // The proxy appends the address it saw last: the right-most entry is the one it vouches for.
  const hops = xff.split(",").map((h) => h.trim()).filter(Boolean);
  return hops.at(-1)?.slice(0, 64) ?? peer;
}
