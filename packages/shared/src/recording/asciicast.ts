/**
 * asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/): a JSON header line, then one
 * JSON array per event: [seconds, "o", text], [seconds, "i", text], [seconds, "r", "COLSxROWS"],
 * [seconds, "m", label] (a marker: here, where the size cap cut the recording).
 */
export interface CastHeader {
  width: number;
  height: number;
  /** Unix seconds at the start. */
  timestamp: number;
  term: string;
  shell: string;
  title: string;
}

export function castHeaderLine(h: CastHeader): string {
  return `${JSON.stringify({ version: 2, width: h.width, height: h.height, timestamp: h.timestamp, env: { TERM: h.term, SHELL: h.shell }, title: h.title })}\n`;
}

/**
 * How many bytes at the end of `buf` are the start of a UTF-8 sequence not yet complete (0..3):
 * those wait for the next chunk, so an event never splits a character.
 */
export function incompleteUtf8Tail(buf: Buffer): number {
  const n = buf.length;
  // Look back at most 3 bytes for a lead byte whose sequence runs past the end.
  for (let back = 1; back <= 3 && back <= n; back++) {
    const b = buf[n - back]!;
    if ((b & 0xc0) === 0x80) continue; // continuation byte: keep looking for its lead
    const need = b >= 0xf8 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

export interface CastWriterOptions {
  /** The file's size cap in bytes: past it no event is written, and one marker says so. */
  maxBytes: number;
  /** Where the encoded lines go (the store's sink). */
  write(line: string): void;
}

/** Encodes events as asciicast v2 lines, holding split UTF-8 sequences and enforcing the cap. */
export class CastWriter {
  private carry: Buffer | null = null;
  private carryIn: Buffer | null = null;
  bytes = 0;
  truncated = false;

  constructor(
    header: CastHeader,
    private readonly opts: CastWriterOptions,
  ) {
    this.emit(castHeaderLine(header), 0, true);
  }

  /** Output bytes at `seconds` since the start; `parts` are the reads as they came. */
  output(seconds: number, parts: readonly Buffer[]): void {
    this.carry = this.text(seconds, "o", parts, this.carry);
  }

  input(seconds: number, data: Buffer): void {
    this.carryIn = this.text(seconds, "i", [data], this.carryIn);
  }

  resize(seconds: number, cols: number, rows: number): void {
    this.event(seconds, "r", `${cols}x${rows}`);
  }

  /** Writes what is held back (a sequence the stream ended in the middle of, as U+FFFD). */
  end(seconds: number): void {
    if (this.carry) this.event(seconds, "o", this.carry.toString("utf8"));
    if (this.carryIn) this.event(seconds, "i", this.carryIn.toString("utf8"));
    this.carry = this.carryIn = null;
  }

  private text(seconds: number, kind: "o" | "i", parts: readonly Buffer[], carry: Buffer | null): Buffer | null {
    if (this.truncated) return null;
    const all = carry ? [carry, ...parts] : parts;
    const buf = all.length === 1 ? all[0]! : Buffer.concat(all);
    const tail = incompleteUtf8Tail(buf);
    const whole = tail ? buf.subarray(0, buf.length - tail) : buf;
    if (whole.length > 0) this.event(seconds, kind, whole.toString("utf8"));
    // Copied: the caller's buffer may be reused.
    return tail ? Buffer.from(buf.subarray(buf.length - tail)) : null;
  }

  private event(seconds: number, kind: string, data: string): void {
    if (this.truncated) return;
    this.emit(`[${seconds.toFixed(6)}, ${JSON.stringify(kind)}, ${JSON.stringify(data)}]\n`, seconds, false);
  }

  private emit(line: string, seconds: number, force: boolean): void {
    const n = Buffer.byteLength(line);
    if (!force && this.bytes + n > this.opts.maxBytes) {
      this.truncated = true;
      const marker = `[${seconds.toFixed(6)}, "m", "recording truncated: the size cap of ${this.opts.maxBytes} bytes was reached; later output is not recorded"]\n`;
      this.opts.write(marker);
      this.bytes += Buffer.byteLength(marker);
      return;
    }
    this.bytes += n;
    this.opts.write(line);
  }
}
