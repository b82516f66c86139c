import type { IPty } from "node-pty";
import {
  appendChunk,
  decodeIn,
  encodeData,
  encodeEvent,
  LIVE_LOG_TTL_MS,
  MAX_INPUT_STREAMS,
  parseCancel,
  publishSessionIn,
  recordEnded,
  recordReseeded,
  recordRunning,
  recordSessionTarget,
  recordSize,
  type AuditOutbox,
  type ByteRedis,
  type Db,
  type EndReason,
  type Hub,
  type ClaimRecording,
  type InMessage,
  type Logger,
  logged,
  type RedisWriter,
  type SessionEnd,
  type SessionKeys,
  type TerminalJob,
} from "@molecule/shared";
import { recordingContext, type RecordingStore } from "@molecule/shared/recording/index";
import type { ShellCommand } from "../providers/index.ts";
import { SessionRecorder } from "../recording/recorder.ts";
import { killTree } from "./kill-tree.ts";
import { spawnPiped } from "./pipe-process.ts";
import { dropQueuedInput, writeKeystrokesDirectly } from "./pty-direct-write.ts";
import { drainBeforeDestroy } from "./pty-exit-drain.ts";
import type { SparePool } from "./spare-shells.ts";
import type { SpawnPty, SpawnTurn } from "./types.ts";

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
  /** The runner's spawn queue: its sessions fork one per event-loop turn (spawn-turns.ts). */
  spawnTurn: SpawnTurn;
  /** Shells started ahead of time (spare-shells.ts); absent, every shell is spawned at its open. */
  spares?: SparePool;
  replayWindowBytes: number;
  /** Output kept in memory per session to re-seed the replay log after a Redis restart. */
  recentBytes: number;
  idleTimeoutMs: number;
  maxSessionMs: number;
  /** Session recording (asciicast v2): absent, nothing is recorded (the bench compares both). */
  recording?: { store: RecordingStore; maxBytes: number };
  /** How long input that came ahead of a missing message waits for it (default HOLD_MS). */
  holdMs?: number;
  /** A counting client's input is acked at most this often (default INPUT_ACK_MS). */
  inputAckMs?: number;
}

/** The worker's claim of the session's audit row (runner.ts). */
export type Claim = "claimed" | "taken" | "failed";

/** What the runner started before the session: its claim (still under way) and its recording settings. */
export interface SessionEarly {
  claim?: Promise<Claim>;
  /** From the claim (claimTerminalSessionRecording): the org's settings; the row already names the recording when on. */
  recording?: Promise<{ ctx: ClaimRecording | null } | { err: unknown }>;
}

/** How often an append renews the replay log's expiry (LIVE_LOG_TTL_MS, hours): a tenth of it. */
const LOG_TTL_RENEW_MS = LIVE_LOG_TTL_MS / 10;
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
 * Ends a session that never got a shell: tells any viewer why and closes the
 * audit row (when this worker holds it: `audit: false` when the claim failed, and
 * the sweeper closes the row from the end recorded here).
 */
export async function endWithoutShell(
  deps: Pick<SessionDeps, "redis" | "outbox" | "workerId">,
  keys: SessionKeys,
  sessionId: string,
  end: SessionEnd,
  opts: { audit?: boolean } = {},
): Promise<void> {
  const endedAt = Date.now();
  // No shell, so no output log to keep longer.
  await recordEnded(deps.redis.multi(), keys, end, { expireLog: false }).exec();
  if (opts.audit === false) return;
  await deps.outbox.close(auditRecord(sessionId, deps.workerId, end, 0, 0, endedAt));
}

/** A sequenced message that came ahead of a missing one waits this long for it (resync), then goes anyway. */
const HOLD_MS = 1000;
/** At most this many wait (a resync sends at most a few seconds of input again). */
const MAX_HELD = 256;
/**
 * Input acks (counted input): at most one a second, so that a shell's keystrokes cost no extra
 * message each (what is not acked yet is only sent again after a re-attach, and dropped here
 * where the shell has it), and one after every 256 KiB, so that an upload's window (the CLI's
 * 8 MiB) keeps moving.
 */
const INPUT_ACK_MS = 1000;
const INPUT_ACK_BYTES = 256 * 1024;

type Sequenced = InMessage & { stream: number; seq: number };

function auditRecord(sessionId: string, workerId: string, end: SessionEnd, bytesIn: number, bytesOut: number, endedAt: number, recording?: { bytes: number; truncated: boolean }) {
  return {
    ...(recording ? { recording } : {}),
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
  /** When an append last renewed the log's expiry (append). */
  private ttlRenewedAt = Number.NEGATIVE_INFINITY;
  /** A spare's release-line echo, taken off its first output (spare-shells.ts). */
  private dropEcho: ((chunk: Buffer) => Buffer) | null = null;
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
  /** This session's recording, when its org records (PTY sessions only: pipe output is framed). */
  private recorder: SessionRecorder | null = null;
  /** The finished recording's size (finishRecording), for the audit close. */
  private recording: { bytes: number; truncated: boolean } | undefined;
  private resolveDone!: (e: SessionEnd) => void;
  readonly done = new Promise<SessionEnd>((r) => (this.resolveDone = r));
  private readonly onIn = (msg: Buffer) => this.handleIn(msg);
  /** Redis Cluster: the session's shard gone for good (subscriber-hub.ts, onLost). */
  private unLost: (() => void) | null = null;
  readonly log: Logger;

  /** The claim under way (SessionEarly): until it holds, input waits here and output in `pending`. */
  private readonly claim: Promise<Claim>;
  private unclaimed: boolean;
  private inputBeforeClaim: Buffer[] = [];
  private abandoned = false;
  /** Each client connection's input stream and the last of its messages applied here, most recent last. */
  private readonly streams = new Map<number, number>();
  private lastStream = -1;
  /** Messages that came ahead of a missing one (resync), in arrival order. */
  private held: Sequenced[] = [];
  private holdTimer: NodeJS.Timeout | null = null;
  /** Streams whose client counts its input: where in the session's input the stream's next byte is. */
  private readonly inputAt = new Map<number, number>();
  private ackQueued = false;
  private inputAckTimer: NodeJS.Timeout | null = null;
  /** bytesIn as of the last input ack. */
  private inputAcked = 0;

  constructor(
    private readonly job: TerminalJob,
    private readonly keys: SessionKeys,
    private readonly cmd: ShellCommand,
    private readonly deps: SessionDeps,
    private readonly early: SessionEarly = {},
  ) {
    this.claim = early.claim ?? Promise.resolve("claimed");
    this.unclaimed = early.claim !== undefined;
    this.sessionId = job.sessionId;
    this.window = job.windowBytes;
    this.log = deps.log.child({ session_id: job.sessionId, workspace_id: job.workspaceId });
  }

  /** A command run with pipes (exec without a PTY): its stdin is data, its output framed. */
  private get piped(): boolean {
    return this.job.command !== undefined && this.job.pty === false;
  }

  get pid(): number | null {
    return this.pty?.pid ?? null;
  }

  /** Bytes written to the shell and bytes it produced so far (the audit row's counts). */
  get counts(): { sessionId: string; bytesIn: number; bytesOut: number } {
    return { sessionId: this.sessionId, bytesIn: this.bytesIn, bytesOut: this.produced };
  }

  /**
   * Subscribe, then check the cancel key (a cancel that raced the claim is never lost), then
   * spawn. With a claim still under way the shell starts meanwhile, but the session becomes
   * visible (ready, output, input, recording) only once the claim holds; a shell whose claim
   * fails is killed, nothing written. Resolves with the claim's outcome.
   */
  async start(): Promise<Claim> {
    await this.deps.hub.subscribe(this.keys.in, this.onIn);
    this.unLost = this.deps.hub.onLost(this.keys.in, () => void this.end("store_unavailable", { message: "the Redis shard holding this session is unreachable" }));
    const cancelRaw = await this.deps.redis.get(this.keys.cancel);
    const cancelled = parseCancel(cancelRaw);
    if (cancelled) {
      await this.end(cancelled);
      return this.claim;
    }
    const size = { cols: this.job.cols, rows: this.job.rows };
    const spare = this.cmd.spare && !this.job.command ? this.cmd.spare : null;
    // A spare needs no fork: it does not wait for a spawn turn.
    const warm = spare ? (this.deps.spares?.take(spare, size) ?? null) : null;
    if (warm) this.dropEcho = warm.dropEcho;
    else await this.deps.spawnTurn();
    try {
      // An exec session without a PTY runs with pipes, its output framed (pipe-process.ts).
      this.pty = warm?.pty ?? (this.piped ? spawnPiped(this.cmd.file, this.cmd.args, { cwd: this.cmd.cwd, env: this.cmd.env }) : this.deps.spawn(this.cmd.file, this.cmd.args, {
        name: this.job.term ?? "xterm-256color",
        cols: this.job.cols,
        rows: this.job.rows,
        cwd: this.cmd.cwd,
        env: this.cmd.env,
        encoding: null,
      }));
    } catch (err) {
      this.log.error({ err }, "spawn failed");
      await this.end("spawn_failed", { message: `the shell could not be started: ${(err as Error).message}` });
      return this.claim;
    }
    const pty = this.pty;
    writeKeystrokesDirectly(pty);
    drainBeforeDestroy(pty);
    pty.onData((data) => this.output(data as unknown as Buffer));
    pty.onExit(({ exitCode, signal }) => this.exited(exitCode, signal ?? null));
    const claim = await this.claim;
    if (claim !== "claimed") {
      await this.abandon();
      return claim;
    }
    if (this.ending) return claim; // ended while the claim was under way (the shell exited, a cancel)
    // Before any output leaves: the recording starts with the first byte.
    await this.startRecording();
    this.unclaimed = false;
    for (const m of this.inputBeforeClaim.splice(0)) this.handleIn(m);
    this.scheduleFlush();
    await publishSessionIn(
      recordRunning(this.deps.redis.multi(), this.keys, { workerId: this.deps.workerId, pid: pty.pid }),
      this.keys.out,
      encodeEvent({ kind: "ready", workerId: this.deps.workerId, cols: this.job.cols, rows: this.job.rows, pid: pty.pid }),
    ).exec();
    const audit = this.cmd.audit;
    // worker_id was set by the claim; what the provider knows (the instance, the OS user) goes with it.
    if (audit?.instanceId || audit?.osUser) {
      void recordSessionTarget(this.deps.db, this.sessionId, this.deps.workerId, audit).catch((err: unknown) => this.log.warn({ err }, "audit update failed"));
    }
    // The next open of this workspace finds one waiting.
    if (spare) this.deps.spares?.replenish(spare, size);
    this.log.info({ pid: pty.pid, file: this.cmd.file, spare: warm !== null }, "shell started");
    return claim;
  }

  /** The claim failed: the shell goes, unseen; nothing of the session is written (it is not ours). */
  private async abandon(): Promise<void> {
    if (this.abandoned) return;
    this.abandoned = true;
    this.ending = true;
    this.pending = [];
    this.pendingBytes = 0;
    if (this.pty && !this.exitInfo) {
      dropQueuedInput(this.pty);
      await killTree(this.pty.pid);
      await this.waitExit(2000);
    }
    this.unLost?.();
    await this.deps.hub.unsubscribe(this.keys.in, this.onIn).catch(logged(this.log, "debug", "unsubscribing an abandoned session failed"));
    this.log.warn("the session's claim failed: its shell was stopped before it was seen");
    this.resolveDone({ reason: "spawn_failed", offset: 0 });
  }

  /** Reads the org's settings; a failure leaves the session unrecorded (logged), never without a shell. */
  private async startRecording(): Promise<void> {
    const rec = this.deps.recording;
    if (!rec || this.piped) return;
    try {
      const early = this.early.recording ? await this.early.recording : null;
      if (early && "err" in early) throw early.err;
      const ctx = early ? early.ctx : await recordingContext(this.deps.db, this.job.orgId, this.job.workspaceId);
      if (!ctx?.enabled) return;
      this.recorder = new SessionRecorder(
        { store: rec.store, db: this.deps.db, log: this.log, maxBytes: rec.maxBytes },
        { orgId: this.job.orgId, workspaceId: this.job.workspaceId, sessionId: this.sessionId },
        { width: this.job.cols, height: this.job.rows, term: this.job.term ?? "xterm-256color", shell: this.cmd.env.SHELL ?? this.cmd.file, title: ctx.title },
        ctx.input,
      );
      // Settings from the claim: that statement already named the recording on the row. Otherwise
      // the pointer (a commit) is written without holding up the shell: the recording goes on
      // whether or not it lands, as it did when this was awaited.
      if (!early) void this.recorder.announce(this.sessionId).catch((err: unknown) => this.log.warn({ err }, "the session's row does not point to its recording yet"));
    } catch (err) {
      this.log.warn({ err }, "the session could not be recorded");
    }
  }

  /** The recording closed in the store; its size then goes with the audit close. */
  private async finishRecording(): Promise<void> {
    if (!this.recorder) return;
    try {
      const r = await this.recorder.finish(this.sessionId);
      this.recording = r;
      this.log.info({ recording_bytes: r.bytes, truncated: r.truncated }, "recording complete");
    } catch (err) {
      this.log.warn({ err }, "the recording could not be completed");
    }
  }

  // ---- output ----------------------------------------------------------------------

  private output(chunk: Buffer): void {
    const data = this.dropEcho ? this.dropEcho(chunk) : chunk;
    if (data.length === 0) return;
    // Output past the echo (or that is not it): the filter passes everything from now on.
    this.dropEcho = null;
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
    return Math.min(MAX_COALESCE, this.deps.replayWindowBytes / 2, Math.max(MIN_COALESCE, this.window / 4));
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.pendingBytes === 0 || this.unclaimed) return;
    // At the end everything goes out, backlog or not (the end waits for a barrier behind it).
    if (this.waitingDrain && !this.ending) {
      this.updateFlow();
      return;
    }
    if (this.deps.writer.backlog > MAX_BACKLOG && !this.ending) {
      // Redis is not keeping up: hold the output here and stop reading the PTY until it does.
      this.waitingDrain = this.deps.writer.onDrain(() => {
        this.waitingDrain?.();
        this.waitingDrain = null;
        this.updateFlow();
        this.flush();
      });
      this.updateFlow();
      return;
    }
    this.lastFlushAt = performance.now();
    this.lastFlushBytes = this.pendingBytes;
    const offset = this.produced;
    this.produced += this.pendingBytes;
    // The reads go straight into the message: one copy, not a concatenation and then a copy.
    this.recorder?.output(this.pending);
    const payload = encodeData(offset, this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    this.recent.push(payload);
    this.recentBytes += payload.length;
    while (this.recentBytes - this.recent[0]!.length >= this.deps.recentBytes) this.recentBytes -= this.recent.shift()!.length;
    // While Redis is away, output waits in `recent` and goes out in order on reconnect (reseed).
    if (this.deps.writer.ready) this.append(payload);
    this.updateFlow();
  }

  /**
   * The one flow-control rule: the PTY is read only while Redis takes the output
   * (no writer backlog being waited out) and the client's window has room.
   */
  private shouldPause(): boolean {
    return this.waitingDrain !== null || this.produced - this.acked >= this.window;
  }

  /** Pauses or resumes the PTY by shouldPause(); every site that changes its inputs calls this. */
  private updateFlow(): void {
    if (!this.pty) return;
    const pause = this.shouldPause();
    if (pause && !this.paused) {
      this.paused = true;
      this.pty.pause();
    } else if (!pause && this.paused) {
      this.paused = false;
      this.pty.resume();
    }
  }

  private append(payload: Buffer): void {
    const offset = Number(payload.readBigUInt64BE(1));
    // Never trim the entry being appended, even when it alone is longer than the replay window.
    const keepFrom = Math.min(offset, Math.max(0, this.produced - this.deps.replayWindowBytes));
    // The log's expiry is renewed every LOG_TTL_RENEW_MS, not with every chunk: it then lapses at
    // most that much sooner than LIVE_LOG_TTL_MS after the last output.
    const now = performance.now();
    const renew = now - this.ttlRenewedAt >= LOG_TTL_RENEW_MS;
    if (renew) this.ttlRenewedAt = now;
    appendChunk(this.deps.writer, this.keys, payload, offset, keepFrom, renew ? LIVE_LOG_TTL_MS : null);
  }

  /**
   * After a Redis reconnect: the server may have restarted empty, so write the
   * session's state and recent output again (entries already there are skipped).
   * Viewers fill their gaps from it: no byte inside `recentBytes` is lost.
   */
  reseed(): void {
    if (this.ending || !this.pty) return;
    this.ttlRenewedAt = Number.NEGATIVE_INFINITY; // a restarted server has the log without its expiry
    const identity = { workspaceId: this.job.workspaceId, orgId: this.job.orgId, workerId: this.deps.workerId, pid: this.pty.pid, piped: this.piped };
    void recordReseeded(this.deps.redis.pipeline(), this.keys, identity)
      .exec()
      .catch((err: unknown) => this.log.warn({ err }, "re-seeding the session state failed (the next reconnect tries again)"));
    for (const p of this.recent) this.append(p);
  }

  // ---- input and control --------------------------------------------------------------

  private handleIn(msg: Buffer): void {
    if (this.unclaimed) {
      // Nothing reaches the shell before the claim holds (a resize or a cancel, at most: input comes after hello).
      if (this.inputBeforeClaim.length < 64) this.inputBeforeClaim.push(msg);
      return;
    }
    const m = decodeIn(msg);
    if (!m || this.ending) return;
    if (m.stream === undefined || m.seq === undefined) this.apply(m);
    else this.sequenced(m as Sequenced);
  }

  /**
   * A client connection's messages are numbered (bus-codec.ts): one seen before (sent again after a
   * resync) is dropped; one ahead of a missing one waits for it, and the controller's API node is
   * asked for what this session missed (its subscriber was away, and pub/sub keeps nothing).
   */
  private sequenced(m: Sequenced): void {
    const last = this.streams.get(m.stream) ?? 0;
    if (m.seq <= last) return;
    if (m.seq > last + 1) {
      this.hold(m);
      return;
    }
    this.applied(m.stream, m.seq);
    this.apply(m);
    if (this.held.length) this.releaseHeld(false);
  }

  private applied(stream: number, seq: number): void {
    if (stream !== this.lastStream) {
      // Most recent last: the oldest connection's is forgotten first.
      this.streams.delete(stream);
      this.lastStream = stream;
      const oldest = this.streams.size >= MAX_INPUT_STREAMS ? this.streams.keys().next().value : undefined;
      if (oldest !== undefined) this.streams.delete(oldest);
    }
    this.streams.set(stream, seq);
  }

  private hold(m: Sequenced): void {
    this.held.push(m);
    if (this.held.length >= MAX_HELD) this.releaseHeld(true);
    else if (!this.holdTimer) {
      this.requestResync();
      this.holdTimer = setTimeout(() => this.releaseHeld(true), this.deps.holdMs ?? HOLD_MS);
    }
  }

  /** Applies held messages that are next in their stream; with `giveUp`, all of them, in order, the gaps left. */
  private releaseHeld(giveUp: boolean): void {
    for (let progress = true; progress && !this.ending; ) {
      progress = false;
      for (const [i, h] of this.held.entries()) {
        const last = this.streams.get(h.stream) ?? 0;
        if (h.seq > last + 1) continue;
        this.held.splice(i, 1);
        if (h.seq === last + 1) {
          this.applied(h.stream, h.seq);
          this.apply(h);
        }
        progress = true;
        break;
      }
    }
    if (giveUp && this.held.length && !this.ending) {
      const lost = this.held.splice(0).sort((a, b) => a.seq - b.seq);
      if (this.inputGap()) return;
      this.log.warn({ held: lost.length }, "input missed while this worker's subscriber was away did not come again: what came after it is applied");
      for (const h of lost) {
        if (this.ending || h.seq <= (this.streams.get(h.stream) ?? 0)) continue;
        this.applied(h.stream, h.seq);
        this.apply(h);
      }
    }
    if (this.ending) this.held = [];
    if (this.held.length === 0 && this.holdTimer) {
      clearTimeout(this.holdTimer);
      this.holdTimer = null;
    }
  }

  /**
   * Input is lost for good. A terminal's user sees what went missing and types again; a piped
   * command's stdin (an upload) would go on with a hole in it, so that session ends instead.
   */
  private inputGap(): boolean {
    if (!this.piped) return false;
    this.held = [];
    void this.end("store_unavailable", { message: "part of this command's input was lost while the worker's Redis subscriber was away; run it again" });
    return true;
  }

  /**
   * The part of `m` the shell has not received. A stream that said where it starts (input_from)
   * places each of its bytes in the session's input: what a re-attached client sent again, or what
   * a dead connection still had in flight, is dropped where the shell already has it.
   */
  private unseen(m: InMessage & { kind: "input" }): Buffer | null {
    const at = m.stream === undefined ? undefined : this.inputAt.get(m.stream);
    if (at === undefined) return m.data;
    this.inputAt.set(m.stream!, at + m.data.length);
    if (at + m.data.length <= this.bytesIn) return null;
    if (at <= this.bytesIn) return m.data.subarray(this.bytesIn - at);
    // Bytes before it never came (they are not in the client's buffer either: it sends from an ack).
    if (this.inputGap()) return null;
    this.log.warn({ missing: at - this.bytesIn }, "input from a re-attached client starts past what the shell received");
    return m.data;
  }

  /**
   * Tells a client that counts its input how much the shell received: `now` (at the end of this
   * turn) after input_from or INPUT_ACK_BYTES, otherwise once INPUT_ACK_MS after the first byte
   * not acked.
   */
  private ackInput(now: boolean): void {
    if (now || this.bytesIn - this.inputAcked >= INPUT_ACK_BYTES) {
      if (this.ackQueued) return;
      this.ackQueued = true;
      queueMicrotask(() => {
        this.ackQueued = false;
        this.sendInputAck();
      });
    } else if (!this.inputAckTimer && !this.ending) {
      this.inputAckTimer = setTimeout(() => this.sendInputAck(), this.deps.inputAckMs ?? INPUT_ACK_MS);
    }
  }

  private sendInputAck(): void {
    if (this.inputAckTimer) clearTimeout(this.inputAckTimer);
    this.inputAckTimer = null;
    if (this.ending) return;
    this.inputAcked = this.bytesIn;
    this.deps.writer.send(["PUBLISH", this.keys.out, encodeEvent({ kind: "input", offset: this.bytesIn })]);
  }

  /** Asks the API nodes of this session for the messages after the last applied of each stream. */
  private requestResync(): void {
    const streams = [...this.streams].reverse();
    this.deps.writer.send(["PUBLISH", this.keys.out, encodeEvent({ kind: "resync", streams })]);
  }

  /**
   * This worker's subscriber is back (and subscribed again): what was published on the session's
   * channel meanwhile never arrived. Input and control are asked for again; a cancel is in its key too.
   */
  resubscribed(): void {
    if (this.ending || this.unclaimed) return;
    this.requestResync();
    this.deps.redis
      .get(this.keys.cancel)
      .then((raw) => {
        const cancelled = parseCancel(raw);
        if (cancelled) void this.end(cancelled);
      })
      .catch(logged(this.log, "warn", "reading the cancel key after a resubscribe failed"));
  }

  private apply(m: InMessage): void {
    if (m.kind === "input") {
      // Counted here, where it reaches the shell, whoever published it: the audit row's bytes_in.
      if (!this.pty) return;
      const data = this.unseen(m);
      if (!data) return;
      this.lastInput = Date.now();
      this.bytesIn += data.length;
      this.pty.write(data);
      this.recorder?.input(data);
      // A client that counts its input (a stream said input_from) is told what the shell received.
      if (this.inputAt.size > 0) this.ackInput(false);
      return;
    }
    const control = m.control;
    switch (control.t) {
      case "resize":
        // Not after the shell is gone: node-pty throws on the closed descriptor (EBADF).
        if (!this.pty || this.exitInfo) return;
        try {
          this.pty.resize(control.cols, control.rows);
        } catch (err) {
          this.log.debug({ err }, "resize of an exiting shell ignored");
          return;
        }
        this.recorder?.resize(control.cols, control.rows);
        void recordSize(this.deps.redis.pipeline(), this.keys, control)
          .exec()
          .catch((err: unknown) => this.log.debug({ err }, "recording the size failed (a re-attach starts at the old size)"));
        return;
      case "ack":
        if (control.offset > this.acked) this.acked = Math.min(control.offset, this.produced);
        if (control.window !== undefined) this.window = Math.min(this.job.windowBytes, control.window);
        this.updateFlow();
        return;
      case "cancel":
        void this.end(control.reason);
        return;
      case "input_from": {
        // Sequenced, so `m.stream` is set; a client that counts its input gets acks from now on.
        const stream = m.stream;
        if (stream === undefined) return;
        this.inputAt.set(stream, control.offset);
        // The client sends again all the shell lacks: what an earlier counted connection left
        // waiting behind a gap is in there, so it waits no longer (nor ends a piped command).
        const before = this.held.length;
        this.held = this.held.filter((h) => h.stream === stream || !this.inputAt.has(h.stream));
        if (this.held.length < before) this.releaseHeld(false);
        this.ackInput(true);
        return;
      }
      case "resent": {
        // What comes again starts at `from`: anything of that stream before it is gone for good.
        const last = this.streams.get(control.stream) ?? 0;
        if (control.from - 1 > last) {
          if (this.inputGap()) return;
          this.log.warn({ lost: control.from - 1 - last }, "input missed while this worker's subscriber was away is too old to send again");
          this.applied(control.stream, control.from - 1);
        }
        if (this.held.length) this.releaseHeld(false);
        return;
      }
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
    // A command (exec) runs until it ends, however long it goes without input (a build, a job):
    // the idle timeout is for shells left open; the maximum length and the orphan grace apply to both.
    if (!this.job.command && now - this.lastInput >= this.deps.idleTimeoutMs) {
      void this.end("idle_timeout", { message: `no input for ${Math.round(this.deps.idleTimeoutMs / 1000)} s` });
    } else if (now - this.startedAt >= this.deps.maxSessionMs) {
      void this.end("session_expired", { message: `maximum session length of ${Math.round(this.deps.maxSessionMs / 1000)} s reached` });
    }
  }

  private exited(code: number, signal: number | null): void {
    this.exitInfo = { code, signal: signal || null };
    // Nobody reads what is still queued for it.
    if (this.pty) dropQueuedInput(this.pty);
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
        if (this.deps.writer.ready) {
          await this.deps.writer.barrier(this.keys.log);
          return;
        }
      } catch {
        // connection lost before Redis answered: wait for it, append again
      }
      const deadline = performance.now() + 5000;
      while (!this.deps.writer.ready && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
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
    if (this.inputAckTimer) clearTimeout(this.inputAckTimer);
    if ((await this.claim) !== "claimed") {
      await this.abandon();
      return this.done;
    }
    this.unclaimed = false;
    // The audit row's closed_at: when the session ended, not when the row could be written.
    const endedAt = Date.now();
    try {
      if (this.pty && !this.exitInfo) {
        // Outside the flow rule: the last output is read (and the exit seen) whatever the window says.
        this.pty.resume();
        dropQueuedInput(this.pty);
        await killTree(this.pty.pid);
        await this.waitExit(2000);
      }
      this.flush();
      // store_unavailable: the session's shard is gone (Redis Cluster): nothing to wait for there.
      const storeGone = reason === "store_unavailable";
      await Promise.all([storeGone ? undefined : this.outputInLog(), this.finishRecording()]);
      const code = reason === "exit" ? (extra.code ?? this.exitInfo?.code ?? null) : null;
      const signal = reason === "exit" ? (extra.signal ?? this.exitInfo?.signal ?? null) : null;
      const end: SessionEnd = { reason, offset: this.produced, code, signal, ...(extra.message ? { message: extra.message } : {}) };
      const stored = recordEnded(this.deps.redis.multi(), this.keys, end, { expireLog: true }).exec();
      // The end is stored if the shard comes back (a re-attach learns it); the audit row below does not wait for it.
      if (storeGone) void stored.catch((err: unknown) => this.log.warn({ err }, "the end could not be stored: the session's Redis shard is unreachable"));
      else await stored;
      this.unLost?.();
      await this.deps.hub.unsubscribe(this.keys.in, this.onIn);
      await this.deps.outbox.close(auditRecord(this.sessionId, this.deps.workerId, end, this.bytesIn, this.produced, endedAt, this.recording));
      await this.cmd.cleanup?.().catch((err) => this.log.warn({ err }, "cleanup failed"));
      this.log.info({ reason, code, signal, bytes_in: this.bytesIn, bytes_out: this.produced }, "session ended");
      this.resolveDone(end);
      return end;
    } catch (err) {
      this.log.error({ err }, "ending the session failed");
      const end: SessionEnd = { reason, offset: this.produced };
      // Redis failed us, not necessarily PostgreSQL: the row still gets the truth (a second close is a no-op).
      await this.deps.outbox.close(auditRecord(this.sessionId, this.deps.workerId, end, this.bytesIn, this.produced, endedAt, this.recording));
      this.resolveDone(end);
      return end;
    }
  }
}
