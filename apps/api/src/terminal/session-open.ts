import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Queue } from "bullmq";
import type { WebSocket } from "ws";
import {
  CLOSE,
  isUuid,
  readOutput,
  schema,
  sessionKeys,
  type ByteRedis,
  type Db,
  type ErrorCode,
  type Logger,
  type RedisWriter,
  type SessionEnd,
  type TerminalJob,
  type TerminalQuery,
  type Hub,
} from "@molecule/shared";
import type { Principal } from "../auth.ts";
import type { WorkspaceRow } from "../workspaces/service.ts";
import { TerminalBridge, type BridgeDeps, type Mode } from "./bridge.ts";
import { clientAddress } from "./client-address.ts";
import { sendError } from "./frames.ts";
import type { SessionControl } from "./session-control.ts";
import { VIEWER_TTL_MS } from "./watchdog.ts";

/** Lifetime of a session's meta hash: long past its end, so a late re-attach still learns how it ended. */
const META_TTL_MS = 3600_000 * 24;

export interface OpenMetrics {
  bytesOut(n: number): void;
  bytesIn(n: number): void;
  replay(n: number): void;
  gap(): void;
  opened(ms: number, kind?: "new" | "reattach"): void;
  closed(reason: string): void;
}

export interface SessionOpenDeps {
  db: Db;
  redis: ByteRedis;
  writer: RedisWriter;
  hub: Hub;
  log: Logger;
  queue: Queue<TerminalJob>;
  control: SessionControl;
  config: { ns: string; nodeId: string; windowBytes: number; claimTimeoutMs: number; inputBytesPerSec: number; inputMsgsPerSec: number };
  metrics?: OpenMetrics;
}

/** Starts a new session on an upgraded socket (job, state, audit row), or re-attaches it to one that exists. */
export function createSessionOpener(d: SessionOpenDeps) {
  const c = d.config;
  const bridgeDeps: Omit<BridgeDeps, "log" | "metrics"> = {
    redis: d.redis,
    writer: d.writer,
    hub: d.hub,
    windowBytes: c.windowBytes,
    claimTimeoutMs: c.claimTimeoutMs,
    inputBytesPerSec: c.inputBytesPerSec,
    inputMsgsPerSec: c.inputMsgsPerSec,
    control: d.control,
  };

  /** The bridge's metrics, timing this socket's open from the upgrade (t0) to its hello. */
  function timedMetrics(t0: number, kind: "new" | "reattach"): BridgeDeps["metrics"] {
    const m = d.metrics;
    return m && { ...m, attached: () => m.opened(performance.now() - t0, kind) };
  }

  function failEarly(sock: WebSocket, mode: Mode, code: ErrorCode & keyof typeof CLOSE, message: string): void {
    sendError(sock, mode, code, message);
    d.metrics?.closed(code);
    sock.close(CLOSE[code], code);
  }

  async function open(sock: WebSocket, mode: Mode, req: IncomingMessage, p: Principal, workspace: WorkspaceRow, q: TerminalQuery, t0: number): Promise<void> {
    if (q.session !== undefined) return reattach(sock, mode, p, workspace, q.session, q.offset ?? 0, t0);
    if (workspace.status !== "ready") {
      return failEarly(sock, mode, "not_ready", `the workspace is ${workspace.status}, not ready`);
    }
    const sessionId = randomUUID();
    const keys = sessionKeys(c.ns, sessionId);
    const bridge = new TerminalBridge(
      sock,
      { sessionId, workspaceId: workspace.id, keys, mode, from: 0, cols: q.cols, rows: q.rows, isNew: true, workerId: null, endedAlready: null },
      { ...bridgeDeps, log: d.log.child({ session_id: sessionId, workspace_id: workspace.id }), metrics: timedMetrics(t0, "new") },
    );
    d.control.add(bridge);
    const now = Date.now();
    // Independent of each other, so in parallel (one round trip, not three); all done before
    // the job exists: the subscription (no output missed), the session state, the audit row.
    await Promise.all([
      bridge.start(),
      d.redis
        .multi()
        .hset(keys.meta, { ws: workspace.id, org: p.orgId, cols: q.cols, rows: q.rows, state: "pending", created: now })
        .pexpire(keys.meta, META_TTL_MS)
        .set(keys.viewer, c.nodeId, "PX", VIEWER_TTL_MS)
        .exec(),
      d.db.insert(schema.terminalSessions).values({
        id: sessionId,
        orgId: p.orgId,
        workspaceId: workspace.id,
        tokenId: p.tokenId,
        tokenPrefix: p.tokenPrefix,
        clientAddr: clientAddress(req),
        userAgent: req.headers["user-agent"]?.slice(0, 512) ?? null,
        provider: workspace.provider,
        instanceId: workspace.instanceId,
      }),
    ]);
    await d.queue.add(
      "session",
      {
        sessionId,
        workspaceId: workspace.id,
        orgId: p.orgId,
        cols: q.cols,
        rows: q.rows,
        claimDeadline: now + c.claimTimeoutMs,
        windowBytes: c.windowBytes,
        provider: workspace.provider as TerminalJob["provider"],
        instanceId: workspace.instanceId,
      },
      { jobId: sessionId, attempts: 1, removeOnComplete: true, removeOnFail: { age: 3600 } },
    );
    bridge.log.info({ mode, open_ms: Math.round(performance.now() - t0) }, "terminal session requested");
  }

  async function reattach(sock: WebSocket, mode: Mode, p: Principal, workspace: WorkspaceRow, session: string, offset: number, t0: number): Promise<void> {
    const notFound = () => failEarly(sock, mode, "session_not_found", "no such session for this workspace (unknown, expired or ended)");
    if (!isUuid(session)) return notFound();
    const keys = sessionKeys(c.ns, session);
    const meta = await d.redis.hgetall(keys.meta);
    if (meta.ws !== workspace.id || meta.org !== p.orgId) return notFound();
    // A client cannot have bytes the session never produced: hello says where output really resumes.
    const { lastEnd } = await readOutput(d.redis, keys.log, offset, 0, 1);
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
        workspaceId: workspace.id,
        keys,
        mode,
        from: offset,
        cols: Number(meta.cols) || 80,
        rows: Number(meta.rows) || 24,
        isNew: meta.state === "pending",
        workerId: meta.worker ?? null,
        endedAlready: ended,
      },
      { ...bridgeDeps, log: d.log.child({ session_id: session, workspace_id: workspace.id }), metrics: timedMetrics(t0, "reattach") },
    );
    d.control.add(bridge);
    await d.redis.set(keys.viewer, c.nodeId, "PX", VIEWER_TTL_MS);
    await bridge.start();
    bridge.log.info({ mode, offset }, "terminal re-attached");
  }

  return { open };
}
