import { isAscii } from "node:buffer";

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
    const need = sequenceLength(b);
    return need > back ? back : 0;
  }
  return 0;
}

export interface CastWriterOptions {
  /** The file's size cap in bytes: past it no event is written, and one marker says so. */
  maxBytes: number;
  /** Where the encoded lines go (the store's sink); the buffer is the caller's to keep. */
  write(line: Buffer): void;
}

/** Bytes a UTF-8 sequence led by `b` has (1 for ASCII, a continuation or an invalid byte). */
const LINE_END = Buffer.from("]\n");

function sequenceLength(b: number): number {
  return b >= 0xf8 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
}

/**
 * Encodes events as asciicast v2 lines, holding split UTF-8 sequences and enforcing the cap.
 * On the output path of every recorded session: one decode and one JSON.stringify per flush, no
 * concatenation of the reads (ASCII, the common case, is decoded as latin1: the same text, cheaper).
 */
export class CastWriter {
  private carry: Buffer | null = null;
  private carryIn: Buffer | null = null;
  bytes = 0;
  truncated = false;

  constructor(
    header: CastHeader,
    private readonly opts: CastWriterOptions,
  ) {
    this.emit(Buffer.from(castHeaderLine(header)), 0, true);
  }

  /** Output bytes at `seconds` since the start; `parts` are the reads as they came. */
  output(seconds: number, parts: readonly Buffer[]): void {
    if (this.truncated) return;
    this.carry = this.text(seconds, "o", parts, this.carry);
  }

  input(seconds: number, data: Buffer): void {
    if (this.truncated) return;
    this.carryIn = this.text(seconds, "i", [data], this.carryIn);
  }

  resize(seconds: number, cols: number, rows: number): void {
    this.event(seconds, "r", `${cols}x${rows}`, true);
  }

  /** A marker event (asciicast's "m"): where the recording was cut, for one. */
  marker(seconds: number, label: string): void {
    this.event(seconds, "m", label, false);
  }

  /** Writes what is held back (a sequence the stream ended in the middle of, as U+FFFD). */
  end(seconds: number): void {
    if (this.carry) this.event(seconds, "o", this.carry.toString("utf8"), false);
    if (this.carryIn) this.event(seconds, "i", this.carryIn.toString("utf8"), false);
    this.carry = this.carryIn = null;
  }

  /** Decodes `parts` after `carry` into one event; returns the incomplete sequence at the end, if any. */
  private text(seconds: number, kind: "o" | "i", parts: readonly Buffer[], carry: Buffer | null): Buffer | null {
    let text = "";
    let ascii = true;
    let held = carry;
    for (let part of parts) {
      if (part.length === 0) continue;
      if (held) {
        // Complete the held sequence with the first bytes of this read.
        const need = sequenceLength(held[0]!) - held.length;
        const take = Math.min(need, part.length);
        held = Buffer.concat([held, part.subarray(0, take)]);
        part = part.subarray(take);
        if (held.length < sequenceLength(held[0]!) && part.length === 0) continue;
        text += held.toString("utf8");
        ascii = false;
        held = null;
        if (part.length === 0) continue;
      }
      if (isAscii(part)) {
        text += part.toString("latin1");
        continue;
      }
      ascii = false;
      const tail = incompleteUtf8Tail(part);
      text += (tail ? part.subarray(0, part.length - tail) : part).toString("utf8");
      // Copied: the caller's buffer may be reused.
      if (tail) held = Buffer.from(part.subarray(part.length - tail));
    }
    if (text.length > 0) this.event(seconds, kind, text, ascii);
    return held;
  }

  private event(seconds: number, kind: string, data: string, ascii: boolean): void {
    if (this.truncated) return;
    // The text's JSON is encoded on its own (no second copy of it into the line); JSON.stringify
    // leaves only ASCII in ASCII text (control characters become \u escapes), so latin1 is exact.
    const json = Buffer.from(JSON.stringify(data), ascii ? "latin1" : "utf8");
    const head = Buffer.from(`[${seconds.toFixed(6)}, "${kind}", `, "latin1");
    const n = head.length + json.length + LINE_END.length;
    if (!this.fits(n, seconds)) return;
    this.opts.write(head);
    this.opts.write(json);
    this.opts.write(LINE_END);
  }

  /** Counts `n` bytes about to be written, or writes the marker instead when they pass the cap. */
  private fits(n: number, seconds: number): boolean {
    if (this.bytes + n <= this.opts.maxBytes) {
      this.bytes += n;
      return true;
    }
    this.emit(Buffer.alloc(0), seconds, false, true);
    return false;
  }

  private emit(line: Buffer, seconds: number, force: boolean, overCap = false): void {
    if (overCap || (!force && this.bytes + line.length > this.opts.maxBytes)) {
      this.truncated = true;
      const marker = Buffer.from(`[${seconds.toFixed(6)}, "m", "recording truncated: the size cap of ${this.opts.maxBytes} bytes was reached; later output is not recorded"]\n`);
      this.opts.write(marker);
      this.bytes += marker.length;
      return;
    }
    this.bytes += line.length;
    this.opts.write(line);
  }
}
