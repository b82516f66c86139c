import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Queue } from "bullmq";
import type { WebSocket } from "ws";
import {
  CLOSE,
  insertTerminalSession,
  logged,
  isUuid,
  readOutput,
  readSessionMeta,
  recordPending,
  sessionKeys,
  type ByteRedis,
  type Db,
  type ErrorCode,
  type Logger,
  type RedisWriter,
  type TerminalJob,
  type TerminalQueueJob,
  type TerminalQuery,
  type Hub,
} from "@molecule/shared";
import type { Principal } from "../auth.ts";
import type { WorkspaceRow } from "../workspaces/service.ts";
import { viewerJoined, viewerLeft } from "@molecule/shared/recording/recordings-db";
import { TerminalBridge, type BridgeDeps, type BridgeOptions, type Mode } from "./bridge.ts";
import { clientAddress } from "./client-address.ts";
import { sendError } from "./frames.ts";
import type { Presence, Role } from "./presence.ts";
import type { SessionControl } from "./session-control.ts";
import { VIEWER_TTL_MS } from "./watchdog.ts";

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
  queue: Queue<TerminalQueueJob>;
  control: SessionControl;
  /** Who is attached (presence.ts): one per node, shared with the watchdog. */
  presence: Presence;
  config: { ns: string; nodeId: string; windowBytes: number; claimTimeoutMs: number; inputBytesPerSec: number; inputMsgsPerSec: number };
  metrics?: OpenMetrics;
}

/** A pipe (exec, pty=0) session's input budget, as a multiple of the configured per-connection one. */
export const PIPE_INPUT_BUDGET_FACTOR = 32;

/** Starts a new session on an upgraded socket (job, state, audit row), or re-attaches it to one that exists. */
export function createSessionOpener(deps: SessionOpenDeps) {
  const config = deps.config;
  const bridgeDeps: Omit<BridgeDeps, "log" | "metrics"> = {
    redis: deps.redis,
    writer: deps.writer,
    hub: deps.hub,
    windowBytes: config.windowBytes,
    claimTimeoutMs: config.claimTimeoutMs,
    inputBytesPerSec: config.inputBytesPerSec,
    inputMsgsPerSec: config.inputMsgsPerSec,
    control: deps.control,
    presence: deps.presence,
  };
  /** A piped command's input is data, not typing: at its open and at every re-attach. */
  const pipeBudget = { inputBytesPerSec: config.inputBytesPerSec * PIPE_INPUT_BUDGET_FACTOR };

  /** The bridge's metrics, timing this socket's open from the upgrade (t0) to its hello. */
  function timedMetrics(t0: number, kind: "new" | "reattach"): BridgeDeps["metrics"] {
    const metrics = deps.metrics;
    return metrics && { ...metrics, attached: () => metrics.opened(performance.now() - t0, kind) };
  }

  function failEarly(sock: WebSocket, mode: Mode, code: ErrorCode & keyof typeof CLOSE, message: string): void {
    sendError(sock, mode, code, message);
    deps.metrics?.closed(code);
    sock.close(CLOSE[code], code);
  }

  async function open(sock: WebSocket, mode: Mode, req: IncomingMessage, principal: Principal, workspace: WorkspaceRow, query: TerminalQuery, t0: number): Promise<void> {
    const who = { label: principal.tokenPrefix, address: clientAddress(req), since: new Date().toISOString() };
    const inputFrom = query.input_from ?? null;
    if (query.session !== undefined) return reattach(sock, mode, principal, workspace, query.session, query.offset ?? 0, t0, query.mode === "view" ? "viewer" : "controller", who, inputFrom);
    if (workspace.status !== "ready") {
      return failEarly(sock, mode, "not_ready", `the workspace is ${workspace.status}, not ready`);
    }
    const sessionId = randomUUID();
    const keys = sessionKeys(config.ns, sessionId);
    // A pipe session's input is data (molecule cp), not typing: a larger budget, flood bounds kept.
    const piped = query.command !== undefined && query.pty === false;
    const bridge = new TerminalBridge(
      sock,
      { sessionId, workspaceId: workspace.id, keys, mode, from: 0, cols: query.cols, rows: query.rows, isNew: true, workerId: null, endedAlready: null, role: "controller", who, inputFrom },
      {
        ...bridgeDeps,
        ...(piped ? pipeBudget : {}),
        log: deps.log.child({ session_id: sessionId, workspace_id: workspace.id }),
        metrics: timedMetrics(t0, "new"),
      },
    );
    deps.control.add(bridge);
    const now = Date.now();
    // Independent of each other, so in parallel (one round trip, not three); all done before
    // the job exists: the subscription (no output missed), the session state, the audit row.
    await Promise.all([
      bridge.start(),
      recordPending(deps.redis.multi(), keys, { workspaceId: workspace.id, orgId: principal.orgId, cols: query.cols, rows: query.rows, createdAt: now, piped })
        .set(keys.viewer, config.nodeId, "PX", VIEWER_TTL_MS)
        .exec(),
      insertTerminalSession(deps.db, {
        id: sessionId,
        orgId: principal.orgId,
        workspaceId: workspace.id,
        tokenId: principal.tokenId,
        tokenPrefix: principal.tokenPrefix,
        clientAddr: clientAddress(req),
        userAgent: req.headers["user-agent"]?.slice(0, 512) ?? null,
        provider: workspace.provider,
        instanceId: workspace.instanceId,
        command: query.command ?? null,
        pty: !piped,
      }),
    ]);
    await deps.queue.add(
      "session",
      {
        sessionId,
        workspaceId: workspace.id,
        orgId: principal.orgId,
        cols: query.cols,
        rows: query.rows,
        claimDeadline: now + config.claimTimeoutMs,
        windowBytes: config.windowBytes,
        provider: workspace.provider as TerminalJob["provider"],
        instanceId: workspace.instanceId,
        ...(query.command ? { command: query.command, pty: !piped } : {}),
        ...(query.term ? { term: query.term } : {}),
      },
      { jobId: sessionId, attempts: 1, removeOnComplete: true, removeOnFail: { age: 3600 } },
    );
    bridge.log.info({ mode, open_ms: Math.round(performance.now() - t0), ...(query.command ? { command: query.command, pty: !piped } : {}) }, "terminal session requested");
  }

  async function reattach(
    sock: WebSocket,
    mode: Mode,
    principal: Principal,
    workspace: WorkspaceRow,
    session: string,
    offset: number,
    t0: number,
    role: Role,
    who: BridgeOptions["who"],
    inputFrom: number | null,
  ): Promise<void> {
    const notFound = () => failEarly(sock, mode, "session_not_found", "no such session for this workspace (unknown, expired or ended)");
    if (!isUuid(session)) return notFound();
    const keys = sessionKeys(config.ns, session);
    const meta = await readSessionMeta(deps.redis, keys);
    if (meta.workspaceId !== workspace.id || meta.orgId !== principal.orgId) return notFound();
    const log = deps.log.child({ session_id: session, workspace_id: workspace.id });
    // Read as absent; said once, since it means something wrote the hash outside session-state.ts.
    if (meta.corrupt.length > 0) log.warn({ fields: meta.corrupt }, "session state has invalid fields (read as absent)");
    // A client cannot have bytes the session never produced: hello says where output really resumes.
    const { lastEnd } = await readOutput(deps.redis, keys.log, offset, 0, 1);
    if (lastEnd !== null && offset > lastEnd) offset = lastEnd;
    const bridge = new TerminalBridge(
      sock,
      {
        sessionId: session,
        workspaceId: workspace.id,
        keys,
        mode,
        from: offset,
        cols: meta.cols ?? 80,
        rows: meta.rows ?? 24,
        isNew: meta.state === "pending",
        workerId: meta.workerId,
        endedAlready: meta.end,
        role,
        who,
        inputFrom,
        ...(role === "viewer" ? { onDone: () => void watching.then((id) => (id ? viewerLeft(deps.db, id) : undefined)).catch(logged(log, "warn", "the viewer audit row was not closed")) } : {}),
      },
      // A piped command's re-attach goes on with its upload at a pipe's budget, as at its open.
      { ...bridgeDeps, ...(meta.piped ? pipeBudget : {}), log, metrics: timedMetrics(t0, "reattach") },
    );
    // The viewer audit: who watched which session, from where, from when to when.
    const watching: Promise<string | null> =
      role === "viewer"
        ? viewerJoined(deps.db, { sessionId: session, orgId: principal.orgId, tokenId: principal.tokenId, tokenPrefix: principal.tokenPrefix, clientAddr: who.address }).catch((err: unknown) => {
            log.warn({ err }, "the viewer audit row could not be written");
            return null;
          })
        : Promise.resolve(null);
    deps.control.add(bridge);
    // A viewer does not hold the session (its orphan grace runs as if nobody were attached).
    if (role === "controller") await deps.redis.set(keys.viewer, config.nodeId, "PX", VIEWER_TTL_MS);
    await bridge.start();
    // Subscribed now: what the worker announced since the read above is read again.
    if (!meta.end) await bridge.recheckState();
    bridge.log.info({ mode, offset, role }, "terminal re-attached");
  }

  return { open };
}
