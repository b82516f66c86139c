import { spawn } from "node:child_process";
import { constants } from "node:os";
import type { IPty } from "node-pty";

/**
 * An exec session without a PTY (protocol `command` with `pty=0`): the command runs with
 * pipes, and its stdout and stderr travel the session's one output stream as frames
 * `[stream u8][length u32 BE][bytes]` (1 stdout, 2 stderr), so the log, offsets, acks and
 * re-attach work as for a shell. Input is framed the same way: stream 0 is stdin, and an
 * empty stream-0 frame closes stdin (EOF). docs/terminal-protocol.md, "Exec sessions".
 */
export const STREAM = { stdin: 0, stdout: 1, stderr: 2 } as const;
const HEADER = 5;
/** A client frame larger than this is not ours: the input stream is cut there (stdin closed). */
const MAX_INPUT_FRAME = 16 * 1024 * 1024;

export function frame(stream: number, data: Buffer): Buffer {
  const b = Buffer.allocUnsafe(HEADER + data.length);
  b[0] = stream;
  b.writeUInt32BE(data.length, 1);
  data.copy(b, HEADER);
  return b;
}

/** Reassembles frames from input that arrives in pieces of any size. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  broken = false;

  push(data: Buffer, onFrame: (stream: number, payload: Buffer) => void): void {
    if (this.broken) return;
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
    while (this.buf.length >= HEADER) {
      const len = this.buf.readUInt32BE(1);
      if (len > MAX_INPUT_FRAME) {
        this.broken = true;
        this.buf = Buffer.alloc(0);
        onFrame(STREAM.stdin, Buffer.alloc(0));
        return;
      }
      if (this.buf.length < HEADER + len) return;
      const stream = this.buf[0] as number;
      const payload = this.buf.subarray(HEADER, HEADER + len);
      this.buf = this.buf.subarray(HEADER + len);
      onFrame(stream, payload);
    }
  }
}

/** child_process behind the part of node-pty's IPty that a session uses. */
export function spawnPiped(file: string, args: string[], o: { cwd?: string; env: Record<string, string> }): IPty {
  const child = spawn(file, args, { cwd: o.cwd, env: o.env, stdio: ["pipe", "pipe", "pipe"] });
  if (child.pid === undefined) {
    // spawn reports ENOENT and the like asynchronously; no pid means it never ran.
    child.on("error", (err) => void err); // the error is reported by the throw below
    throw new Error(`could not start ${file}`);
  }
  const dataListeners: ((d: Buffer) => void)[] = [];
  const exitListeners: ((e: { exitCode: number; signal?: number }) => void)[] = [];
  const emit = (stream: number) => (d: Buffer) => {
    const f = frame(stream, d);
    for (const l of dataListeners) l(f);
  };
  child.stdout.on("data", emit(STREAM.stdout));
  child.stderr.on("data", emit(STREAM.stderr));
  // Input after the command closed its stdin (or exited) has nowhere to go: EPIPE is expected.
  child.stdin.on("error", (err) => void err);
  child.on("error", (err) => emit(STREAM.stderr)(Buffer.from(`molecule: ${err.message}\n`)));
  // `close` comes after stdout and stderr ended: no output is left behind the exit.
  child.on("close", (code, signal) => {
    const e = { exitCode: code ?? 0, ...(signal ? { signal: constants.signals[signal] } : {}) };
    for (const l of exitListeners) l(e);
  });
  const reader = new FrameReader();
  const onFrame = (stream: number, payload: Buffer) => {
    if (stream !== STREAM.stdin || child.stdin.destroyed || child.stdin.writableEnded) return;
    if (payload.length === 0) child.stdin.end();
    // A copy: the payload is a view into the input message, whose memory may be reused before the pipe takes it.
    else child.stdin.write(Buffer.from(payload));
  };
  const disposable = { dispose: () => undefined };
  const pty = {
    pid: child.pid,
    cols: 0,
    rows: 0,
    process: file,
    handleFlowControl: false,
    onData(l: (d: Buffer) => void) {
      dataListeners.push(l);
      return disposable;
    },
    onExit(l: (e: { exitCode: number; signal?: number }) => void) {
      exitListeners.push(l);
      return disposable;
    },
    write(data: string | Buffer) {
      reader.push(typeof data === "string" ? Buffer.from(data) : data, onFrame);
    },
    resize() {
      // no terminal: nothing to resize
    },
    clear() {
      // no screen to clear
    },
    pause() {
      child.stdout.pause();
      child.stderr.pause();
    },
    resume() {
      child.stdout.resume();
      child.stderr.resume();
    },
    kill(signal?: string) {
      child.kill((signal as NodeJS.Signals | undefined) ?? "SIGHUP");
    },
  };
  return pty as unknown as IPty;
}
