import { recordingKey, type RecordingStore } from "@molecule/shared/recording/index";
import { Worker, type Job } from "bullmq";
import type { Redis } from "ioredis";
import type { IPty } from "node-pty";
import {
  TERMINAL_QUEUE,
  HANGUP_JOB,
  QUEUE_POLL_SECONDS,
  hangupJob,
  sessionPlace,
  bullPrefix,
  logged,
  publishSession,
  claimTerminalSession,
  claimTerminalSessionRecording,
  createAuditOutbox,
  encodeEvent,
  parseCancel,
  reportSessionBytes,
  sessionKeys,
  terminalJob,
  workerAliveKey,
  type AuditOutboxOptions,
  type ByteRedis,
  type Db,
  type Hub,
  type Logger,
  type ClaimRecording,
  type RedisWriter,
  type TerminalJob,
  type TerminalQueueJob,
} from "@molecule/shared";
import { countPty, countPtyBytes, type WorkerMetrics } from "../metrics.ts";
import { providerFor, TerminalUnavailableError, type ProviderRegistry } from "../providers/index.ts";
import { endWithoutShell, PtySession, type Claim, type SessionEarly } from "./session.ts";
import { createSpawnTurns } from "./spawn-turns.ts";
import { createSparePool } from "./spare-shells.ts";
import { SPARE_READY } from "../providers/sandbox-argv.ts";
import type { SpawnPty } from "./types.ts";

export interface RunnerDeps {
  redis: ByteRedis;
  writer: RedisWriter;
  /** Connection BullMQ duplicates for its blocking reads. */
  bullConnection: Redis;
  hub: Hub;
  db: Db;
  ns: string;
  workerId: string;
  log: Logger;
  providers: ProviderRegistry;
  spawn: SpawnPty;
  capacity: number;
  replayWindowBytes: number;
  orphanGraceMs: number;
  idleTimeoutMs: number;
  maxSessionMs: number;
  metrics?: Pick<WorkerMetrics, "session" | "jobWait">;
  /** Session recording (session.ts); absent, nothing is recorded. */
  recording?: { store: RecordingStore; maxBytes: number };
  /** Spare shells kept at most (spare-shells.ts; 0: none) and how long one waits unused. */
  spareShells?: { max: number; idleMs: number };
  /** The audit outbox's retry timing (tests drive it). */
  auditRetry?: Pick<AuditOutboxOptions, "retryBaseMs" | "retryMaxMs" | "timers">;
}

/** Tolerates a 2 s event-loop stall (a beat every 500 ms with sessions); with the API's 1 s threshold a dead worker is noticed within ~4.5 s. */
const ALIVE_TTL_MS = 3000;
const TICK_MS = 500;
/**
 * With no session the round (the heartbeat alone) comes every 2 s: each round is a wake-up of an
 * idle worker, and the key matters only for a worker's sessions (the API's watchdog and audit
 * sweeper act on nothing else). The first session makes the round come at once and then every TICK_MS.
 */
const IDLE_TICK_MS = 2000;
/** Recent output each session keeps in memory to re-seed its log after a Redis restart. */
const RESEED_BYTES = 256 * 1024;
/** How often live sessions' byte counts go to their audit rows (one UPDATE for all of them). */
const PROGRESS_MS = 5000;

/**
 * Claims `terminal` jobs and holds each for the life of its shell, so BullMQ
 * concurrency is this worker's session capacity. Jobs are never retried and a
 * stalled one is failed, not re-run: a shell that died with its worker cannot be
 * resumed, and the viewer is told `worker_lost` instead.
 */
export function createTerminalRunner(deps: RunnerDeps) {
  const sessions = new Map<string, PtySession>();
  const alive = workerAliveKey(deps.ns, deps.workerId);
  const metrics = deps.metrics;
  const outbox = createAuditOutbox({ db: deps.db, redis: deps.redis, ns: deps.ns, workerId: deps.workerId, log: deps.log, ...deps.auditRetry });
  const spawnTurn = createSpawnTurns();
  const spawn = metrics ? countPtyBytes(deps.spawn, metrics.session) : deps.spawn;
  // Spares start uncounted: their marker and release line are not a session's bytes (onTaken counts from there).
  const spares = createSparePool({
    spawn: deps.spawn,
    spawnTurn,
    log: deps.log,
    max: deps.spareShells?.max ?? 0,
    idleMs: deps.spareShells?.idleMs ?? 600_000,
    readyMarker: SPARE_READY,
    ...(metrics ? { onTaken: (pty: IPty, echoBytes: number) => void countPty(pty, metrics.session, echoBytes) } : {}),
  });
  const sessionDeps = {
    ...deps,
    outbox,
    spawnTurn,
    spawn,
    spares,
    recentBytes: Math.min(deps.replayWindowBytes, RESEED_BYTES),
  };

  async function process(job: Job<TerminalJob>): Promise<void> {
    const data = terminalJob.parse(job.data);
    const keys = sessionKeys(deps.ns, data.sessionId);
    const log = deps.log.child({ session_id: data.sessionId, workspace_id: data.workspaceId });
    metrics?.jobWait(TERMINAL_QUEUE, (job.processedOn ?? Date.now()) - job.timestamp);
    if (Date.now() > data.claimDeadline) {
      // The API already told the client no_capacity: never start a shell nobody holds.
      log.warn("claimed after the claim deadline; not starting a shell");
      metrics?.session.closed("no_capacity");
      return;
    }
    const ctx = {
      sessionId: data.sessionId,
      workspaceId: data.workspaceId,
      orgId: data.orgId,
      instanceId: data.instanceId,
      cols: data.cols,
      rows: data.rows,
      ...(data.command ? { command: data.command, pty: data.pty !== false } : {}),
      ...(data.term ? { term: data.term } : {}),
    };
    const commandOf = () =>
      Promise.resolve()
        .then(() => providerFor(deps.providers, data.provider).terminalCommand(ctx))
        .then(
          (cmd) => ({ cmd }),
          (err: unknown) => ({ err }),
        );
    // The claim (one UPDATE: a PostgreSQL commit) is the slowest step before a shell. A provider
    // whose command needs no claimed session (it pushes no key, starts nothing) prepares it, and
    // the session starts its shell, while the claim is under way; nothing of the session is
    // written, no input reaches the shell and no output leaves it before the claim holds
    // (session.ts), and a shell whose claim fails is killed unseen. Other providers claim first.
    const overlap = deps.providers[data.provider as keyof ProviderRegistry]?.commandBeforeClaim === true;
    // A worker that records claims with the recording: the same statement names it on the row when
    // the org records and returns the org's settings (recording-claim: no query or commit more).
    const records = deps.recording !== undefined && !(data.command && data.pty === false);
    const claimed: Promise<{ held: boolean; recording?: ClaimRecording }> = records
      ? claimTerminalSessionRecording(deps.db, data.sessionId, deps.workerId, recordingKey(data.orgId, data.workspaceId, data.sessionId)).then((r) => (r ? { held: true, recording: r } : { held: false }))
      : claimTerminalSession(deps.db, data.sessionId, deps.workerId).then((held) => ({ held }));
    const claimP = claimed.then(
      (c): Claim => (c.held ? "claimed" : "taken"),
      (err: unknown): Claim => {
        log.error({ err }, "claiming the audit row failed");
        return "failed";
      },
    );
    const recording: SessionEarly["recording"] = records ? claimed.then((c) => ({ ctx: c.recording ?? null }), (err: unknown) => ({ err })) : undefined;
    const early = overlap ? commandOf() : null;
    // A provider that claims first reads the cancel key before its (costly) command is made. With the
    // overlap the session reads it itself, once it has subscribed to its input (a cancel published
    // between the two is never missed), and ends before any shell starts: one round trip less here.
    const [cancelled, claimedFirst] = overlap ? [null, null] : await Promise.all([deps.redis.get(keys.cancel).then(parseCancel), claimP]);
    const notClaimed = async (claim: Claim): Promise<boolean> => {
      if (claim === "taken") {
        // Closed already, or another worker's: a job for it (a crafted one) must not touch that session.
        log.warn("the session's audit row is closed or held by another worker: not starting a shell");
        return true;
      }
      if (claim === "failed") {
        // No unaudited shells. The row stays unclaimed; the sweeper closes it from the end recorded here.
        await endWithoutShell(sessionDeps, keys, data.sessionId, { reason: "spawn_failed", offset: 0, message: "the session could not be recorded (database unavailable)" }, { audit: false });
        metrics?.session.closed("spawn_failed");
        return true;
      }
      return false;
    };
    if (claimedFirst && (await notClaimed(claimedFirst))) return;
    if (cancelled) {
      if (await notClaimed(await claimP)) return;
      await endWithoutShell(sessionDeps, keys, data.sessionId, { reason: cancelled, offset: 0 });
      metrics?.session.closed(cancelled);
      return;
    }
    // Claimed: the viewer's claim deadline stops here, though the shell may take a while yet
    // (a provider pushing a key, spawns taking turns on a busy worker).
    const announceClaim = () => void publishSession(deps.redis, keys.out, encodeEvent({ kind: "claimed", workerId: deps.workerId })).catch(logged(log, "debug", "could not announce the claim (the ready event follows)"));
    if (claimedFirst) announceClaim();
    else void claimP.then((c) => c === "claimed" && announceClaim());
    const made = await (early ?? commandOf());
    if ("err" in made) {
      if (await notClaimed(await claimP)) return;
      const err = made.err;
      const reason = err instanceof TerminalUnavailableError ? err.reason : "spawn_failed";
      log.warn({ err, reason }, "terminal unavailable");
      await endWithoutShell(sessionDeps, keys, data.sessionId, { reason, offset: 0, message: (err as Error).message });
      metrics?.session.closed(reason);
      return;
    }
    const cmd = made.cmd;
    const s = new PtySession(data, keys, cmd, sessionDeps, { ...(overlap ? { claim: claimP } : {}), ...(recording ? { recording } : {}) });
    sessions.set(data.sessionId, s);
    if (sessions.size === 1) hurry();
    try {
      if (await notClaimed(await s.start())) return;
      if (s.pid !== null) metrics?.session.opened();
      const end = await s.done;
      metrics?.session.closed(end.reason);
    } finally {
      sessions.delete(data.sessionId);
    }
  }

  /** A lost worker's session (closed as worker_lost): what it left running, ended by its provider. */
  async function hangup(job: Job<TerminalQueueJob>): Promise<void> {
    const { sessionId } = hangupJob.parse(job.data);
    const place = await sessionPlace(deps.db, sessionId);
    // Only a closed row: a session some worker still holds is that worker's to end.
    if (!place?.closed) return;
    const provider = deps.providers[place.provider as keyof ProviderRegistry];
    if (!provider?.hangup) return;
    await provider.hangup(place.workspaceId, sessionId);
    deps.log.info({ session_id: sessionId, workspace_id: place.workspaceId }, "hung up a lost worker's session");
  }

  const worker = new Worker<TerminalQueueJob>(TERMINAL_QUEUE, (job) => (job.name === HANGUP_JOB ? hangup(job) : process(job as Job<TerminalJob>)), {
    connection: deps.bullConnection,
    prefix: bullPrefix(deps.ns),
    concurrency: deps.capacity,
    maxStalledCount: 0,
    autorun: false,
    drainDelay: QUEUE_POLL_SECONDS,
  });
  worker.on("error", (err) => deps.log.warn({ err }, "terminal worker error"));

  // Redis came back (maybe restarted empty): say we are alive at once...
  let connected = deps.redis.status === "ready";
  deps.redis.on("close", () => (connected = false));
  deps.redis.on("ready", () => {
    if (connected) return;
    connected = true;
    beat();
  });
  // ...and once the output writer is connected again, re-seed every session's log (output
  // written while it was away, or lost with a restarted server, goes out in order).
  // On a cluster only the sessions of the shard that came back (`affects`): a failover of one
  // shard does not make every session of every shard write its recent output again.
  const unReady = deps.writer.onReady((affects) => {
    const which = [...sessions].filter(([id]) => !affects || affects(sessionKeys(deps.ns, id).log));
    if (which.length) deps.log.warn({ sessions: which.length }, "redis reconnected: re-seeding session logs");
    for (const [, s] of which) s.reseed();
  });
  // The subscriber is back: input and control published while it was away never arrived; each
  // session asks its controller's API node for them again (PtySession.resubscribed).
  const unResubscribed = deps.hub.onReconnect(() => {
    for (const [, s] of sessions) s.resubscribed();
  });

  // Heartbeat out ("shell alive" for every session here), first in each round of the one timer
  // (started by start()): the checks after it run in the background, so a slow one never delays it.
  function beat(): void {
    // A missed beat is the next one's job (the key outlives several); the API judges lateness.
    // On the reply-less writer: an OK to read was one more wake-up a second of an idle worker. While
    // the writer reconnects the beat waits (at most its queue age, 3 s) or is dropped: the same as a missed one.
    deps.writer.send(["SET", alive, String(sessions.size), "PX", String(ALIVE_TTL_MS)]);
  }
  let timer: NodeJS.Timeout | undefined;
  let idleRound = false;
  // One wake-up per round for both (an idle worker does nothing else), sooner while sessions run.
  function round(): void {
    beat();
    checks();
    idleRound = sessions.size === 0;
    timer = setTimeout(round, idleRound ? IDLE_TICK_MS : TICK_MS);
    timer.unref();
  }
  /** A first session while the idle round waits: beat now and go on at the busy pace. */
  function hurry(): void {
    if (!timer || !idleRound) return;
    clearTimeout(timer);
    round();
  }

  // Viewer presence in (orphan grace), idle and maximum-length checks.
  let ticking = false;
  async function tick(): Promise<void> {
    if (sessions.size === 0) return;
    const list = [...sessions.values()];
    const pipe = deps.redis.pipeline();
    for (const s of list) pipe.exists(sessionKeys(deps.ns, s.sessionId).viewer);
    const res = (await pipe.exec()) ?? [];
    const now = Date.now();
    list.forEach((s, i) => {
      const [err, n] = res[i] ?? [new Error("no reply"), 0];
      if (!err) s.tick(now, n === 1, deps.orphanGraceMs);
    });
  }
  // Live byte counts to the audit rows, when they changed since the last report.
  const reported = new Map<string, string>();
  let lastProgress = 0;
  let reporting = false;
  function progress(now: number): void {
    if (reporting || now - lastProgress < PROGRESS_MS) return;
    lastProgress = now;
    for (const id of reported.keys()) if (!sessions.has(id)) reported.delete(id);
    const changed = [...sessions.values()].map((s) => s.counts).filter((c) => reported.get(c.sessionId) !== `${c.bytesIn}:${c.bytesOut}`);
    if (changed.length === 0) return;
    reporting = true;
    void reportSessionBytes(deps.db, deps.workerId, changed)
      .then(() => {
        for (const c of changed) reported.set(c.sessionId, `${c.bytesIn}:${c.bytesOut}`);
      })
      .catch((err: unknown) => deps.log.warn({ err, sessions: changed.length }, "audit progress update failed (the close still carries the counts)"))
      .finally(() => (reporting = false));
  }
  function checks(): void {
    progress(Date.now());
    if (ticking) return;
    ticking = true;
    void tick()
      .catch((err) => deps.log.debug({ err }, "heartbeat failed"))
      .finally(() => (ticking = false));
  }

  return {
    worker,
    sessions,
    outbox,
    spares,
    /** One round of the viewer, idle and maximum-length checks, as the timer runs it (tests drive it directly). */
    tick,
    /** Says this worker is alive, starts its heartbeat and checks, takes over its outbox, then claims jobs. */
    async start(): Promise<void> {
      await deps.redis.set(alive, "0", "PX", ALIVE_TTL_MS);
      if (!timer) {
        // No session yet: the first one brings this round forward too.
        idleRound = true;
        timer = setTimeout(round, TICK_MS);
        timer.unref();
      }
      // Closes an earlier process with this worker id could not write: retried from now on.
      await outbox.recover().catch((err: unknown) => deps.log.error({ err }, "audit outbox: could not read the entries left in Redis"));
      void worker.run();
      await worker.waitUntilReady();
    },
    /**
     * Stops claiming; waits up to `drainMs` for sessions to end by themselves, then
     * ends the rest with `worker_shutdown` (the viewer is told why).
     */
    async drain(drainMs: number): Promise<void> {
      const closing = worker.close();
      spares.close();
      const deadline = performance.now() + drainMs;
      while (sessions.size > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      await Promise.all([...sessions.values()].map((s) => s.end("worker_shutdown")));
      await closing;
      // One last try; what PostgreSQL still refuses stays in Redis for the API's sweeper.
      if (outbox.pending) await outbox.retry();
      outbox.stop();
      clearTimeout(timer);
      timer = undefined;
      unReady();
      unResubscribed();
      // Its TTL removes it anyway, a few seconds later. After the writer's last beat has run
      // (a barrier), so that beat cannot bring the key back after the delete.
      await deps.writer
        .barrier(alive)
        .then(() => deps.redis.del(alive))
        .catch(logged(deps.log, "debug", "could not delete the heartbeat key"));
    },
  };
}
export type TerminalRunner = ReturnType<typeof createTerminalRunner>;
