import { writeSync } from "node:fs";
import type { IPty } from "node-pty";

/**
 * node-pty (1.1.0) writes input through the libuv thread pool: a thread wake-up
 * and an event-loop wake-up per keystroke, on the echo's critical path. Input
 * arriving with nothing queued before it is written at once instead (the master
 * is non-blocking: a keystroke never blocks); anything the PTY does not take goes
 * through node-pty's queue as before, so order holds. Everything above (pty.write
 * and its wrappers) is unchanged. Relies on node-pty internals; without them it
 * does nothing.
 */
export function writeKeystrokesDirectly(pty: IPty): void {
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
 * Forgets input node-pty still has queued for a shell that is being killed: its queue would
 * otherwise go on writing to the master after it closed and print "Unhandled pty write error"
 * (EBADF) on stderr, outside the logs, once per session. A write already in flight in the thread
 * pool can still fail that way. Relies on the same internals; without them it does nothing.
 */
export function dropQueuedInput(pty: IPty): void {
  const stream = (pty as unknown as { _writeStream?: { _writeQueue?: unknown; _writeImmediate?: unknown } })._writeStream;
  if (!stream || !Array.isArray(stream._writeQueue)) return;
  stream._writeQueue.length = 0;
  if (stream._writeImmediate) clearImmediate(stream._writeImmediate as NodeJS.Immediate);
  stream._writeImmediate = undefined;
}
