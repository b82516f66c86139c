import { writeSync } from "node:fs";
import type { IPty } from "node-pty";
import { and, eq, isNull, or, sql } from "drizzle-orm";
import {
  appendChunk,
  decodeIn,
  encodeData,
  encodeEvent,
  schema,
  type AuditOutbox,
  type ByteRedis,
  type Db,
  type EndReason,
  type Hub,
  type Logger,
  type RedisWriter,
  type SessionEnd,
  type SessionKeys,
  type TerminalJob,
} from "@molecule/shared";
import type { ShellCommand } from "../providers/index.ts";
import { killTree } from "./kill-tree.ts";

export type SpawnPty = (file: string, args: string[], opts: { name: string; cols: number; rows: number; cwd?: string; env: Record<string, string>; encoding: null }) => IPty;

export interface SessionDeps {
  redis: ByteRedis;
  /** Output appends go here: no reply wakes the worker per chunk (redis-writer.ts). */
  writer: RedisWriter;
  hub: Hub;
  db: Db;
  /** Audit closes: written at once, or kept and retried while PostgreSQL is away. */
  outbox: AuditOutbox;
  workerId: string;
  log: Logger;
  spawn: SpawnPty;
  replayWindowBytes: number;
  /** Output kept in memory per session to re-seed the replay log after a Redis restart. */
  recentBytes: number;
  idleTimeoutMs: number;
  maxSessionMs: number;
}

/** How long an ended session's keys stay, so a late re-attach still gets the tail and the exit. */
export const ENDED_TTL_MS = 3600_000;
const LOG_TTL_MS = 6 * 3600_000;
/** Output chunk size bounds (chunkLimit). */
const MAX_COALESCE = 128 * 1024;
const MIN_COALESCE = 16 * 1024;
/** Output within this long of a flush of at least STREAM_MIN_BYTES is bulk: it waits to be batched. */
const STREAM_DELAY_MS = 4;
const STREAM_MIN_BYTES = 1024;
const TAIL_BYTES = 4096;
/** Appends written to the socket but not yet taken by Redis: beyond this, output waits (and the PTY pauses). */
const MAX_BACKLOG = 1024 * 1024;

/**
 * node-pty (1.1.0) writes input through the libuv thread pool: a thread wake-up
 * and an event-loop wake-up per keystroke, on the echo's critical path. Input
 * arriving with nothing queued before it is written at once instead (the master
 * is non-blocking: a keystroke never blocks); anything the PTY does not take goes
 * through node-pty's queue as before, so order holds. Everything above (pty.write
 * and its wrappers) is unchanged. Relies on node-pty internals; without them it
 * does nothing.
 */
function writeKeystrokesDirectly(pty: IPty): void {
  type Stream = { _fd?: unknown; _writeQueue?: unknown; write?: (data: string | Buffer) => void };
  const stream = (pty as unknown as { _writeStream?: Stream })._writeStream;
  if (!stream || typeof stream._fd !== "number" || !Array.isArray(stream._writeQueue) || typeof stream.write !== "function") return;
  const fd = stream._fd;
  const queue = stream._writeQueue;
  const queued = stream.write.bind(stream);
  stream.write = (data) => {
    let buf = typeof data === "string" ? Buffer.from(data) : data;
    if (queue.length === 0 && buf.length > 0) {
      try {
        const n = writeSync(fd, buf);
        if (n === buf.length) return;
        buf = buf.subarray(n);
      } catch {
        // EAGAIN (the shell is not reading) or an error: node-pty's queue retries or reports it.
      }
    }
    queued(buf);
  };
}

/**
 * Spawning a PTY forks this process synchronously, and on a busy machine each
 * fork takes tens of milliseconds (more while other new shells start). A burst
 * of opens resumed in one event-loop turn would spawn them back to back and
 * starve the heartbeat for seconds (the API would report the worker lost), so
 * spawns take turns: one per event-loop iteration, with timers and I/O between.
 */
let spawnQueue: Promise<void> = Promise.resolve();
function spawnTurn(): Promise<void> {
  const turn = spawnQueue.then(() => new Promise<void>((resolve) => setImmediate(resolve)));
  spawnQueue = turn;
  return turn;
}

/**
 * Takes the session's audit row for this worker: only a row still open and not
 * held by another worker (a job crafted for someone else's session claims nothing).
 * Every later update of the row is `WHERE worker_id = <this worker>`.
 */
export async function claimAudit(db: Db, sessionId: string, workerId: string): Promise<boolean> {
  const t = schema.terminalSessions;
  const rows = await db
    .update(t)
    .set({ workerId })
    .where(and(eq(t.id, sessionId), isNull(t.closedAt), or(isNull(t.workerId), eq(t.workerId, workerId))))
    .returning({ id: t.id });
  return rows.length > 0;
}

/**
 * Ends a session that never got a shell: tells any viewer why and closes the
 * audit row (when this worker holds it: `audit: false` when the claim failed, and
 * the sweeper closes the row from the end recorded here).
 */
export async function endWithoutShell(
  d: Pick<SessionDeps, "redis" | "outbox" | "workerId">,
  k: SessionKeys,
  sessionId: string,
  end: SessionEnd,
  o: { audit?: boolean } = {},
): Promise<void> {
  const endedAt = Date.now();
  await d.redis
    .multi()
    .hset(k.meta, { state: "ended", end: JSON.stringify(end) })
    .pexpire(k.meta, ENDED_TTL_MS)
    .set(k.cancel, end.reason, "PX", ENDED_TTL_MS)
    .publish(k.out, encodeEvent({ kind: "end", end }))
    .exec();
  if (o.audit === false) return;
  await d.outbox.close(auditRecord(sessionId, d.workerId, end, 0, 0, endedAt));
}

/**
 * Writes the byte counts of live sessions to their audit rows (rows this worker
 * holds, still open), so the row tells the truth while the session runs and after
 * a crash that leaves no close behind (worker_lost keeps the last counts). One
 * statement for every session.
 */
export async function reportProgress(db: Db, workerId: string, counts: { sessionId: string; bytesIn: number; bytesOut: number }[]): Promise<void> {
  if (counts.length === 0) return;
  const values = sql.join(
    counts.map((c) => sql`(${c.sessionId}::uuid, ${c.bytesIn}::bigint, ${c.bytesOut}::bigint)`),
    sql`, `,
  );
  await db.execute(sql`
    UPDATE terminal_sessions AS t SET bytes_in = v.bytes_in, bytes_out = v.bytes_out
    FROM (VALUES ${values}) AS v(id, bytes_in, bytes_out)
    WHERE t.id = v.id AND t.worker_id = ${workerId} AND t.closed_at IS NULL`);
}

function auditRecord(sessionId: string, workerId: string, end: SessionEnd, bytesIn: number, bytesOut: number, endedAt: number) {
  return {
    sessionId,
    workerId,
    reason: end.reason,
    code: end.code ?? null,
    signal: end.signal == null ? null : String(end.signal),
    bytesIn,
    bytesOut,
    closedAt: endedAt,
  };
}

/**
 * One shell on this worker. Output is coalesced per event-loop turn, appended to
 * the replay log and published in one atomic step; the PTY is paused while more
 * than the client's window is unacknowledged, so a `yes` cannot fill memory.
 */
export class PtySession {
  readonly sessionId: string;
  private pty: IPty | null = null;
  private produced = 0;
  private acked = 0;
  /** Unacknowledged output at which the PTY pauses: the job's window, or the viewer's smaller one (ack control). */
  private window: number;
  private paused = false;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private flushScheduled = false;
  /** Output waits for the writer's socket to drain (a slow Redis); the unsubscribe function. */
  private waitingDrain: (() => void) | null = null;
  private lastFlushAt = 0;
  private lastFlushBytes = 0;
  /** The most recent output (encoded), kept to re-seed the log after a Redis restart. */
  private recent: Buffer[] = [];
  private recentBytes = 0;
  private bytesIn = 0;
  private lastInput = Date.now();
  private readonly startedAt = Date.now();
  private orphanSince: number | null = null;
  private ending = false;
  private exitInfo: { code: number | null; signal: number | null } | null = null;
  private exitWaiters: (() => void)[] = [];
  /** The last output bytes, for diagnoseExit (only kept when the command has one). */
  private tail: Buffer[] = [];
  private tailBytes = 0;
  private resolveDone!: (e: SessionEnd) => void;
  readonly done = new Promise<SessionEnd>((r) => (this.resolveDone = r));
  private readonly onIn = (msg: Buffer) => this.handleIn(msg);
  readonly log: Logger;

  constructor(
    private readonly job: TerminalJob,
    private readonly keys: SessionKeys,
    private readonly cmd: ShellCommand,
    private readonly d: SessionDeps,
  ) {
    this.sessionId = job.sessionId;
    this.window = job.windowBytes;
    this.log = d.log.child({ session_id: job.sessionId, workspace_id: job.workspaceId });
  }

  get pid(): number | null {
    return this.pty?.pid ?? null;
  }

  /** Bytes written to the shell and bytes it produced so far (the audit row's counts). */
  get counts(): { sessionId: string; bytesIn: number; bytesOut: number } {
    return { sessionId: this.sessionId, bytesIn: this.bytesIn, bytesOut: this.produced };
  }

  /** Subscribe, then check the cancel key (a cancel that raced the claim is never lost), then spawn. */
  async start(): Promise<void> {
    await this.d.hub.subscribe(this.keys.in, this.onIn);
    const cancelled = await this.d.redis.get(this.keys.cancel);
    if (cancelled) {
      await this.end((cancelled as EndReason) ?? "client_closed");
      return;
    }
    await spawnTurn();
    try {
      this.pty = this.d.spawn(this.cmd.file, this.cmd.args, {
        name: "xterm-256color",
        cols: this.job.cols,
        rows: this.job.rows,
        cwd: this.cmd.cwd,
        env: this.cmd.env,
        encoding: null,
      });
    } catch (err) {
      this.log.error({ err }, "spawn failed");
      await this.end("spawn_failed", { message: `the shell could not be started: ${(err as Error).message}` });
      return;
    }
    const pty = this.pty;
    writeKeystrokesDirectly(pty);
    pty.onData((data) => this.output(data as unknown as Buffer));
    pty.onExit(({ exitCode, signal }) => this.exited(exitCode, signal ?? null));
    await this.d.redis
      .multi()
      .hset(this.keys.meta, { state: "running", worker: this.d.workerId, pid: pty.pid })
      .publish(this.keys.out, encodeEvent({ kind: "ready", workerId: this.d.workerId, cols: this.job.cols, rows: this.job.rows, pid: pty.pid }))
      .exec();
    const audit = this.cmd.audit;
    // worker_id was set by the claim; what the provider knows (the instance, the OS user) goes with it.
    if (audit?.instanceId || audit?.osUser) {
      void this.d.db
        .update(schema.terminalSessions)
        .set({ instanceId: audit.instanceId ?? undefined, osUser: audit.osUser ?? undefined })
        .where(and(eq(schema.terminalSessions.id, this.sessionId), eq(schema.terminalSessions.workerId, this.d.workerId)))
        .catch((err: unknown) => this.log.warn({ err }, "audit update failed"));
    }
    this.log.info({ pid: pty.pid, file: this.cmd.file }, "shell started");
  }

  // ---- output ----------------------------------------------------------------------

  private output(data: Buffer): void {
    if (this.cmd.diagnoseExit) {
      this.tail.push(data);
      this.tailBytes += data.length;
      while (this.tailBytes - this.tail[0]!.length >= TAIL_BYTES) this.tailBytes -= this.tail.shift()!.length;
    }
    this.pending.push(data);
    this.pendingBytes += data.length;
    if (this.pendingBytes >= this.chunkLimit()) this.flush();
    else this.scheduleFlush();
  }

  /**
   * Interactive output (an echo, a prompt) leaves in the next turn of the event
   * loop. Bulk output (a full read right after a big flush) collects for up to
   * STREAM_DELAY_MS or a full chunk: the PTY hands over ~4 KiB per read, and
   * each Redis append costs the same whatever its size. While Redis is slow to
   * take what was written (the writer's backlog), output collects and leaves
   * when the socket drains.
   */
  private scheduleFlush(): void {
    if (this.flushScheduled || this.waitingDrain || this.pendingBytes === 0) return;
    this.flushScheduled = true;
    const streaming = this.lastFlushBytes >= STREAM_MIN_BYTES && performance.now() - this.lastFlushAt < STREAM_DELAY_MS;
    if (streaming) setTimeout(this.flushNow, STREAM_DELAY_MS);
    else setImmediate(this.flushNow);
  }

  private readonly flushNow = () => this.flush();

  /** A quarter of the window (flow control stays fine-grained), at most half the replay window. */
  private chunkLimit(): number {
    return Math.min(MAX_COALESCE, this.d.replayWindowBytes / 2, Math.max(MIN_COALESCE, this.window / 4));
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.pendingBytes === 0) return;
    // At the end everything goes out, backlog or not (the end waits for a barrier behind it).
    if (this.waitingDrain && !this.ending) {
      if (!this.paused && this.pty && this.pendingBytes >= this.chunkLimit()) {
        this.paused = true;
        this.pty.pause();
      }
      return;
    }
    if (this.d.writer.backlog > MAX_BACKLOG && !this.ending) {
      // Redis is not keeping up: hold the output here and stop reading the PTY until it does.
      this.waitingDrain = this.d.writer.onDrain(() => {
        this.waitingDrain?.();
        this.waitingDrain = null;
        if (this.paused && this.produced - this.acked < this.window) {
          this.paused = false;
          this.pty?.resume();
        }
        this.flush();
      });
      if (!this.paused && this.pty) {
        this.paused = true;
        this.pty.pause();
      }
      return;
    }
    this.lastFlushAt = performance.now();
    this.lastFlushBytes = this.pendingBytes;
    const offset = this.produced;
    this.produced += this.pendingBytes;
    // The reads go straight into the message: one copy, not a concatenation and then a copy.
    const payload = encodeData(offset, this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    this.recent.push(payload);
    this.recentBytes += payload.length;
    while (this.recentBytes - this.recent[0]!.length >= this.d.recentBytes) this.recentBytes -= this.recent.shift()!.length;
    // While Redis is away, output waits in `recent` and goes out in order on reconnect (reseed).
    if (this.d.writer.ready) this.append(payload);
    if (!this.paused && this.pty && this.produced - this.acked >= this.window) {
      this.paused = true;
      this.pty.pause();
    }
  }

  private append(payload: Buffer): void {
    const offset = Number(payload.readBigUInt64BE(1));
    // Never trim the entry being appended, even when it alone is longer than the replay window.
    const keepFrom = Math.min(offset, Math.max(0, this.produced - this.d.replayWindowBytes));
    appendChunk(this.d.writer, this.keys, payload, offset, keepFrom, LOG_TTL_MS);
  }

  /**
   * After a Redis reconnect: the server may have restarted empty, so write the
   * session's state and recent output again (entries already there are skipped).
   * Viewers fill their gaps from it: no byte inside `recentBytes` is lost.
   */
  reseed(): void {
    if (this.ending || !this.pty) return;
    void this.d.redis
      .hset(this.keys.meta, { ws: this.job.workspaceId, org: this.job.orgId, worker: this.d.workerId, state: "running", pid: this.pty.pid })
      .catch(() => {});
    for (const p of this.recent) this.append(p);
  }

  // ---- input and control --------------------------------------------------------------

  private handleIn(msg: Buffer): void {
    const m = decodeIn(msg);
    if (!m || this.ending) return;
    if (m.kind === "input") {
      // Counted here, where it reaches the shell, whoever published it: the audit row's bytes_in.
      if (!this.pty) return;
      this.lastInput = Date.now();
      this.bytesIn += m.data.length;
      this.pty.write(m.data);
      return;
    }
    const c = m.control;
    switch (c.t) {
      case "resize":
        this.pty?.resize(c.cols, c.rows);
        void this.d.redis.hset(this.keys.meta, { cols: c.cols, rows: c.rows }).catch(() => {});
        return;
      case "ack":
        if (c.offset > this.acked) this.acked = Math.min(c.offset, this.produced);
        if (c.window !== undefined) this.window = Math.min(this.job.windowBytes, c.window);
        if (this.paused && !this.waitingDrain && this.produced - this.acked < this.window) {
          this.paused = false;
          this.pty?.resume();
        }
        return;
      case "cancel":
        void this.end(c.reason);
        return;
    }
  }

  // ---- lifetime ---------------------------------------------------------------------

  /** Called by the worker's watchdog about once a second. */
  tick(now: number, viewerPresent: boolean, graceMs: number): void {
    if (this.ending || !this.pty) return;
    if (viewerPresent) this.orphanSince = null;
    else {
      this.orphanSince ??= now;
      if (now - this.orphanSince >= graceMs) void this.end("orphaned");
    }
    if (now - this.lastInput >= this.d.idleTimeoutMs) {
      void this.end("idle_timeout", { message: `no input for ${Math.round(this.d.idleTimeoutMs / 1000)} s` });
    } else if (now - this.startedAt >= this.d.maxSessionMs) {
      void this.end("session_expired", { message: `maximum session length of ${Math.round(this.d.maxSessionMs / 1000)} s reached` });
    }
  }

  private exited(code: number, signal: number | null): void {
    this.exitInfo = { code, signal: signal || null };
    for (const w of this.exitWaiters) w();
    this.exitWaiters = [];
    // Output the shell wrote just before exiting may still be in flight from the PTY.
    setTimeout(() => {
      const diag = this.cmd.diagnoseExit?.({ code, signal: signal || null, tail: Buffer.concat(this.tail), ranMs: Date.now() - this.startedAt });
      if (diag) void this.end(diag.reason, { message: diag.message });
      else void this.end("exit", { code, signal: signal || null });
    }, 20);
  }

  /**
   * The end event goes out on another connection: it must not overtake the last
   * output appends (a viewer would close before the last bytes). A barrier on the
   * writer proves Redis ran them; if the connection dropped meanwhile, the recent
   * output is appended again once it is back (bounded wait).
   */
  private async outputInLog(): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        if (this.d.writer.ready) {
          await this.d.writer.barrier();
          return;
        }
      } catch {
        // connection lost before Redis answered: wait for it, append again
      }
      const deadline = Date.now() + 5000;
      while (!this.d.writer.ready && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      for (const p of this.recent) this.append(p);
    }
    this.log.warn("the last output may not be in the replay log: Redis was unreachable at the end of the session");
  }

  private waitExit(ms: number): Promise<void> {
    if (this.exitInfo || !this.pty) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.exitWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** Ends the session once: kills the process tree, tells the viewer, closes the audit row. */
  async end(reason: EndReason, extra: { code?: number | null; signal?: number | null; message?: string } = {}): Promise<SessionEnd> {
    if (this.ending) return this.done;
    this.ending = true;
    // The audit row's closed_at: when the session ended, not when the row could be written.
    const endedAt = Date.now();
    try {
      if (this.pty && !this.exitInfo) {
        this.pty.resume();
        await killTree(this.pty.pid);
        await this.waitExit(2000);
      }
      this.flush();
      await this.outputInLog();
      const code = reason === "exit" ? (extra.code ?? this.exitInfo?.code ?? null) : null;
      const signal = reason === "exit" ? (extra.signal ?? this.exitInfo?.signal ?? null) : null;
      const end: SessionEnd = { reason, offset: this.produced, code, signal, ...(extra.message ? { message: extra.message } : {}) };
      await this.d.redis
        .multi()
        .hset(this.keys.meta, { state: "ended", end: JSON.stringify(end) })
        .pexpire(this.keys.meta, ENDED_TTL_MS)
        .pexpire(this.keys.log, ENDED_TTL_MS)
        .set(this.keys.cancel, reason, "PX", ENDED_TTL_MS)
        .publish(this.keys.out, encodeEvent({ kind: "end", end }))
        .exec();
      await this.d.hub.unsubscribe(this.keys.in, this.onIn);
      await this.d.outbox.close(auditRecord(this.sessionId, this.d.workerId, end, this.bytesIn, this.produced, endedAt));
      await this.cmd.cleanup?.().catch((err) => this.log.warn({ err }, "cleanup failed"));
      this.log.info({ reason, code, signal, bytes_in: this.bytesIn, bytes_out: this.produced }, "session ended");
      this.resolveDone(end);
      return end;
    } catch (err) {
      this.log.error({ err }, "ending the session failed");
      const end: SessionEnd = { reason, offset: this.produced };
      // Redis failed us, not necessarily PostgreSQL: the row still gets the truth (a second close is a no-op).
      await this.d.outbox.close(auditRecord(this.sessionId, this.d.workerId, end, this.bytesIn, this.produced, endedAt));
      this.resolveDone(end);
      return end;
    }
  }
}
