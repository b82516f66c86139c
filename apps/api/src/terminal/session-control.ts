import type { Queue } from "bullmq";
import {
  HANGUP_JOB,
  hangupJobId,
  applyOutboxEntries,
  closeUnheldSession,
  encodeControl,
  execWrites,
  openSessionIds,
  publishSession,
  recordCancel,
  sessionKeys,
  type ByteRedis,
  type Db,
  type EndReason,
  type Logger,
  type SessionEnd,
  type TerminalQueueJob,
} from "@molecule/shared";

/**
 * What session control needs of one attached client. The bridge implements it; this module
 * never imports the bridge, so calls go one way: bridge → control, gateway parts → control.
 */
export interface ControlledSession {
  readonly sessionId: string;
  readonly workerId: string | null;
  readonly state: "waiting" | "attached" | "closed";
  /** A viewer (mode=view) never keeps a session from its orphan grace, nor starts it. */
  readonly role: "controller" | "viewer";
  /** Other API nodes with presence entries at the last read, and whether they were alive then. */
  readonly presenceNodes: ReadonlyMap<string, boolean>;
  /** Reads presence again (an API node with entries here came or went). */
  refreshPresence(): void;
  finish(end: SessionEnd): void;
  drain(): void;
}

export interface SessionControlDeps {
  db: Db;
  redis: ByteRedis;
  queue: Queue<TerminalQueueJob>;
  log: Logger;
  ns: string;
  /** The node's open-session gauge, told on every change. */
  active?(n: number): void;
}

/**
 * The one owner of this node's terminal sessions: the registry of attached clients (by worker),
 * ending a session (cancel), and the audit closes the API is the last word on.
 */
export function createSessionControl(deps: SessionControlDeps) {
  const sessions = new Set<ControlledSession>();
  let draining = false;

  async function cancel(sessionId: string, reason: EndReason): Promise<void> {
    const keys = sessionKeys(deps.ns, sessionId);
    // Key first, then the message: a worker that (re)subscribes or claims later still sees it.
    await execWrites(recordCancel(deps.redis.pipeline(), keys, reason));
    await publishSession(deps.redis, keys.in, encodeControl({ t: "cancel", reason }));
    if (reason === "client_closed" || reason === "no_capacity") {
      // Not claimed yet: take the job back so it does not occupy a worker; close its audit row here.
      const removed = await deps.queue.remove(sessionId).catch((err: unknown) => {
        deps.log.warn({ err, session_id: sessionId }, "removing an unclaimed job failed");
        return 0;
      });
      if (removed) await closeAudit(sessionId, reason);
    }
  }

  /**
   * Closes a row the API is the last word on: never claimed (`heldBy` null), or held by a worker
   * that is gone. A row another worker holds is never touched.
   */
  async function closeAudit(sessionId: string, reason: EndReason, heldBy: string | null = null): Promise<void> {
    await closeUnheldSession(deps.db, sessionId, reason, heldBy);
    // A worker that died could not end what it started outside its own process tree.
    if (reason === "worker_lost" && heldBy !== null) {
      await deps.queue
        .add(HANGUP_JOB, { sessionId }, { jobId: hangupJobId(sessionId), attempts: 3, backoff: { type: "exponential", delay: 1000 }, removeOnComplete: true, removeOnFail: { age: 3600 } })
        .catch((err: unknown) => deps.log.warn({ err, session_id: sessionId }, "the hang-up of a lost session could not be queued (its shell may outlive it)"));
    }
  }

  /**
   * A lost worker's session: the close it could not write (PostgreSQL was down when the session
   * ended) is in the outbox with the real reason, bytes and time; worker_lost only without one.
   */
  async function closeLost(sessionId: string, workerId: string): Promise<void> {
    const applied = await applyOutboxEntries(deps.db, deps.redis, deps.ns, [sessionId], deps.log);
    if (!applied.has(sessionId)) await closeAudit(sessionId, "worker_lost", workerId);
  }

  /** Every client of a worker that is gone ends with worker_lost; its sessions are cancelled and closed. */
  async function workerLost(workerId: string): Promise<void> {
    const lost = [...sessions].filter((s) => s.state !== "closed" && s.workerId === workerId);
    deps.log.warn({ worker_id: workerId, sessions: lost.length }, "terminal worker lost");
    for (const s of lost) {
      s.finish({ reason: "worker_lost", offset: 0 });
      await cancel(s.sessionId, "worker_lost").catch((err: unknown) => deps.log.warn({ err, session_id: s.sessionId }, "cancelling a lost session failed"));
      await closeLost(s.sessionId, workerId).catch((err: unknown) =>
        deps.log.warn({ err, session_id: s.sessionId }, "closing a lost session's audit row failed (the sweeper retries)"),
      );
    }
  }

  /** Ends every session of a workspace (it is being deleted or restarted). */
  async function endWorkspaceSessions(workspaceId: string): Promise<void> {
    const ids = await openSessionIds(deps.db, workspaceId);
    await Promise.all(ids.map((id) => cancel(id, "workspace_deleted")));
  }

  return {
    cancel,
    closeAudit,
    workerLost,
    endWorkspaceSessions,
    add(session: ControlledSession): void {
      sessions.add(session);
      deps.active?.(sessions.size);
    },
    /** The client dropped (or this node drains): the shell lives on for the grace period. */
    detached(session: ControlledSession): void {
      if (draining || session.role === "viewer") return;
      // Start the orphan grace period now rather than when the viewer key expires.
      void deps.redis.del(sessionKeys(deps.ns, session.sessionId).viewer).catch((err: unknown) =>
        deps.log.debug({ err, session_id: session.sessionId }, "clearing the viewer key failed (it expires on its own)"),
      );
    },
    closed(session: ControlledSession): void {
      sessions.delete(session);
      deps.active?.(sessions.size);
    },
    /** Sessions not yet closed. */
    live(): ControlledSession[] {
      return [...sessions].filter((s) => s.state !== "closed");
    },
    /** The workers whose sessions have attached clients here (the ones to watch). */
    attachedWorkers(): string[] {
      const workers = new Set<string>();
      for (const s of sessions) if (s.state === "attached" && s.workerId) workers.add(s.workerId);
      return [...workers];
    },
    get size(): number {
      return sessions.size;
    },
    isDraining: (): boolean => draining,
    /** Graceful shutdown: every client gets 1012 and re-attaches to the same shell through another node. */
    drain(): void {
      draining = true;
      for (const s of [...sessions]) s.drain();
    },
    /** Closing the node: every client is told to re-attach, draining or not. */
    drainAll(): void {
      for (const s of [...sessions]) s.drain();
    },
  };
}
export type SessionControl = ReturnType<typeof createSessionControl>;
