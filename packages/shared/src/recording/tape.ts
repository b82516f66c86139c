import { CastWriter, type CastHeader } from "./asciicast.ts";

/**
 * What the worker stores: the asciicast header as a JSON line, then binary records
 * `[kind: u8][seconds: f64 BE][length: u32 BE][bytes]`, kind one of o, i, r, m. The bytes are the
 * PTY's, unchanged, so recording costs one small header per output flush and a write of the reads
 * themselves (no decoding or JSON escaping on the session's byte path). The API turns a tape into
 * asciicast v2 as it serves it (TapeToCast), splitting output on UTF-8 boundaries there.
 */
export const TAPE_MAGIC = "MOLECULE-TAPE-1 ";
const RECORD_HEAD = 13;
const KINDS = { o: 0x6f, i: 0x69, r: 0x72, m: 0x6d } as const;
type Kind = keyof typeof KINDS;

export interface TapeWriterOptions {
  /** The stored size cap: past it nothing more is kept, and one marker record says so. */
  maxBytes: number;
  /** Where the bytes go (the store's sink); it keeps the buffers it is given. */
  write(data: Buffer): void;
}

export class TapeWriter {
  bytes = 0;
  truncated = false;

  constructor(
    header: CastHeader,
    private readonly opts: TapeWriterOptions,
  ) {
    const line = Buffer.from(`${TAPE_MAGIC}${JSON.stringify({ version: 2, width: header.width, height: header.height, timestamp: header.timestamp, env: { TERM: header.term, SHELL: header.shell }, title: header.title })}\n`);
    this.bytes += line.length;
    opts.write(line);
  }

  /** Output at `seconds`: the reads as they came (kept by reference: node-pty never reuses them). */
  output(seconds: number, parts: readonly Buffer[]): void {
    if (this.truncated) return;
    let n = 0;
    for (const p of parts) n += p.length;
    if (n === 0) return;
    if (this.room(n)) {
      this.opts.write(head(KINDS.o, seconds, n));
      for (const p of parts) this.opts.write(p);
      return;
    }
    // Past the cap: what still fits of this flush is kept, then the marker.
    const fits = this.opts.maxBytes - this.bytes - RECORD_HEAD;
    this.cut(seconds, fits > 0 ? Buffer.concat(parts as Buffer[], n).subarray(0, fits) : null);
  }

  input(seconds: number, data: Buffer): void {
    if (this.truncated || data.length === 0) return;
    if (!this.room(data.length)) return this.cut(seconds, null);
    this.opts.write(head(KINDS.i, seconds, data.length));
    this.opts.write(Buffer.from(data));
  }

  resize(seconds: number, cols: number, rows: number): void {
    if (this.truncated) return;
    const b = Buffer.from(`${cols}x${rows}`);
    if (!this.room(b.length)) return this.cut(seconds, null);
    this.opts.write(head(KINDS.r, seconds, b.length));
    this.opts.write(b);
  }

  /** Counts a record of `n` bytes when it fits under the cap. */
  private room(n: number): boolean {
    if (this.bytes + RECORD_HEAD + n > this.opts.maxBytes) return false;
    this.bytes += RECORD_HEAD + n;
    return true;
  }

  /** The cap is reached: the output that still fits, then one marker; nothing after. */
  private cut(seconds: number, keep: Buffer | null): void {
    this.truncated = true;
    if (keep && keep.length > 0) {
      this.opts.write(head(KINDS.o, seconds, keep.length));
      this.opts.write(keep);
      this.bytes += RECORD_HEAD + keep.length;
    }
    const label = Buffer.from(`recording truncated: the size cap of ${this.opts.maxBytes} bytes was reached; later output is not recorded`);
    this.opts.write(head(KINDS.m, seconds, label.length));
    this.opts.write(label);
    this.bytes += RECORD_HEAD + label.length;
  }
}

function head(kind: number, seconds: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(RECORD_HEAD);
  b[0] = kind;
  b.writeDoubleBE(seconds, 1);
  b.writeUInt32BE(length, 9);
  return b;
}

/**
 * Turns a tape into asciicast v2, fed in pieces of any size (a live recording as it grows):
 * `push` returns the .cast bytes that are complete so far, `end` what is left.
 */
export class TapeToCast {
  private buf: Buffer = Buffer.alloc(0);
  private headerDone = false;
  private cast: CastWriter | null = null;
  private out: Buffer[] = [];
  private last = 0;

  push(data: Buffer): Buffer {
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
    if (!this.headerDone) {
      const nl = this.buf.indexOf(0x0a);
      if (nl < 0) return Buffer.alloc(0);
      const line = this.buf.subarray(0, nl).toString("utf8");
      if (!line.startsWith(TAPE_MAGIC)) throw new Error("not a recording tape");
      const h = JSON.parse(line.slice(TAPE_MAGIC.length)) as { width: number; height: number; timestamp: number; env: { TERM: string; SHELL: string }; title: string };
      this.cast = new CastWriter(
        { width: h.width, height: h.height, timestamp: h.timestamp, term: h.env.TERM, shell: h.env.SHELL, title: h.title },
        { maxBytes: Number.MAX_SAFE_INTEGER, write: (l) => this.out.push(l) },
      );
      this.buf = this.buf.subarray(nl + 1);
      this.headerDone = true;
    }
    const cast = this.cast!;
    let at = 0;
    // Consecutive output records go out as one event when they are close in time (fewer, longer lines).
    while (this.buf.length - at >= RECORD_HEAD) {
      const kind = this.buf[at]!;
      const seconds = this.buf.readDoubleBE(at + 1);
      const len = this.buf.readUInt32BE(at + 9);
      if (this.buf.length - at - RECORD_HEAD < len) break;
      const body = this.buf.subarray(at + RECORD_HEAD, at + RECORD_HEAD + len);
      at += RECORD_HEAD + len;
      this.last = seconds;
      if (kind === KINDS.o) cast.output(seconds, [body]);
      else if (kind === KINDS.i) cast.input(seconds, body);
      else if (kind === KINDS.r) {
        const m = /^(\d+)x(\d+)$/.exec(body.toString());
        if (m) cast.resize(seconds, Number(m[1]), Number(m[2]));
      } else if (kind === KINDS.m) cast.marker(seconds, body.toString());
    }
    // What is left is the start of a record: copied, the caller's buffer may be reused.
    this.buf = at === this.buf.length ? Buffer.alloc(0) : Buffer.from(this.buf.subarray(at));
    return this.take();
  }

  /** The end of the tape: a character cut at the very end is written as U+FFFD. */
  end(): Buffer {
    this.cast?.end(this.last);
    return this.take();
  }

  private take(): Buffer {
    const b = this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out);
    this.out = [];
    return b;
  }
}

export type { Kind };
