/**
 * The framing of exec sessions without a PTY (docs/terminal-protocol.md, "Exec sessions"):
 * `[stream u8][length u32 BE][bytes]`; stream 0 stdin (an empty frame is EOF), 1 stdout, 2 stderr.
 */
export const STREAM = { stdin: 0, stdout: 1, stderr: 2 } as const;
const HEADER = 5;
/** Input frames are cut to this size: the server's window and input budget see even pieces. */
export const MAX_INPUT_FRAME = 64 * 1024;

export function frame(stream: number, data: Buffer): Buffer {
  const b = Buffer.allocUnsafe(HEADER + data.length);
  b[0] = stream;
  b.writeUInt32BE(data.length, 1);
  data.copy(b, HEADER);
  return b;
}

export function stdinFrames(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += MAX_INPUT_FRAME) out.push(frame(STREAM.stdin, data.subarray(i, i + MAX_INPUT_FRAME)));
  return out;
}

export const STDIN_EOF = frame(STREAM.stdin, Buffer.alloc(0));

/** Splits the output stream, arriving in pieces of any size (and across re-attaches), into frames. */
export class FrameSplitter {
  private buf: Buffer = Buffer.alloc(0);

  push(data: Buffer, onFrame: (stream: number, payload: Buffer) => void): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
    while (this.buf.length >= HEADER) {
      const len = this.buf.readUInt32BE(1);
      if (this.buf.length < HEADER + len) return;
      onFrame(this.buf[0] as number, this.buf.subarray(HEADER, HEADER + len));
      this.buf = this.buf.subarray(HEADER + len);
    }
  }
}
