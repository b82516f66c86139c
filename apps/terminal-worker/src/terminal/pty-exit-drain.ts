import { readSync } from "node:fs";
import type { IPty } from "node-pty";

/**
 * node-pty (1.1.0) reports a shell's exit only once its read side closes (EIO), and if that does
 * not come within 200 ms it destroys the socket: whatever was not read yet is gone. A paused PTY
 * (flow control: the client's window is full, or Redis is slow to take output) reads nothing, so
 * the last output a command printed before it exited was lost, and so was output read late on a
 * busy worker while another process still held the terminal. Before that destroy, what the
 * stream holds and what the kernel still has for the master are read and handed to the PTY's
 * data listeners, whatever the flow rule says (as the end of a session does). The master is
 * non-blocking: an empty one answers EAGAIN, a closed slave EIO. Relies on node-pty internals;
 * without them it does nothing.
 */
export function drainBeforeDestroy(pty: IPty): void {
  type Socket = { destroy: (err?: Error) => unknown; read: () => unknown; emit: (ev: string, chunk: unknown) => boolean };
  const internals = pty as unknown as { _socket?: Partial<Socket>; _fd?: unknown };
  const sock = internals._socket;
  const fd = internals._fd;
  if (!sock || typeof sock.destroy !== "function" || typeof sock.read !== "function" || typeof sock.emit !== "function" || typeof fd !== "number") return;
  const destroy = sock.destroy.bind(sock);
  const read = sock.read.bind(sock);
  const emit = sock.emit.bind(sock);
  let drained = false;
  sock.destroy = (err?: Error) => {
    if (!drained) {
      drained = true;
      // What the stream buffered while paused: read() hands each chunk to the 'data' listeners.
      while (read() !== null);
      const buf = Buffer.allocUnsafe(64 * 1024);
      for (let i = 0; i < 256; i++) {
        let n: number;
        try {
          n = readSync(fd, buf, 0, buf.length, null);
        } catch {
          // EAGAIN: nothing more; EIO: the terminal is closed; EBADF: already gone. Any of them ends it.
          break;
        }
        if (n <= 0) break;
        emit("data", Buffer.from(buf.subarray(0, n)));
      }
    }
    return destroy(err);
  };
}
