import type { Db, Logger } from "@molecule/shared";
import { TapeWriter, recordingFinished, recordingKey, recordingStarted, type CastHeader, type RecordingSink, type RecordingStore } from "@molecule/shared/recording/index";

export interface RecorderDeps {
  store: RecordingStore;
  db: Db;
  log: Logger;
  maxBytes: number;
}

/**
 * One session's recording: output, resizes and (when the org asks) input, with the time since the
 * shell started, as a tape (tape.ts: the PTY's bytes behind a 13-byte record head; the API serves it
 * as asciicast v2). Every call is synchronous and cheap: no decoding or escaping on the byte path,
 * the reads themselves handed to the store, which writes in the background.
 */
export class SessionRecorder {
  private readonly t0 = performance.now();
  private readonly sink: RecordingSink;
  private readonly cast: TapeWriter;
  private finished = false;
  readonly key: string;

  constructor(
    private readonly deps: RecorderDeps,
    ids: { orgId: string; workspaceId: string; sessionId: string },
    header: Omit<CastHeader, "timestamp">,
    readonly recordInput: boolean,
  ) {
    this.key = recordingKey(ids.orgId, ids.workspaceId, ids.sessionId);
    this.sink = deps.store.create(this.key);
    this.cast = new TapeWriter({ ...header, timestamp: Math.floor(Date.now() / 1000) }, { maxBytes: deps.maxBytes, write: (line) => this.sink.write(line) });
  }

  private now(): number {
    return (performance.now() - this.t0) / 1000;
  }

  output(parts: readonly Buffer[]): void {
    this.cast.output(this.now(), parts);
  }

  input(data: Buffer): void {
    if (this.recordInput) this.cast.input(this.now(), data);
  }

  resize(cols: number, rows: number): void {
    this.cast.resize(this.now(), cols, rows);
  }

  /** The session row names the recording (the list shows it while the session is live). */
  async announce(sessionId: string): Promise<void> {
    await recordingStarted(this.deps.db, sessionId, this.key);
  }

  /**
   * Writes what is held and closes the file in the store; its size goes on the session row with
   * the audit close (session.ts: one commit for both), or here with `record` (a recording that
   * outlives no close, e.g. tests).
   */
  async finish(sessionId: string, o: { record?: boolean } = {}): Promise<{ bytes: number; truncated: boolean }> {
    const r = { bytes: this.cast.bytes, truncated: this.cast.truncated };
    if (this.finished) return r;
    this.finished = true;
    r.bytes = this.cast.bytes;
    await this.sink.close();
    if (o.record) await recordingFinished(this.deps.db, sessionId, r);
    return r;
  }
}
