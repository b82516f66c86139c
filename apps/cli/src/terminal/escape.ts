/**
 * ssh-style escapes on the input stream: the escape character (default `~`) right after a
 * newline (or as the very first byte) starts one. `~.` disconnects, `~?` lists the escapes,
 * `~~` sends one `~`; any other byte after `~` is sent with the `~` before it, as ssh does.
 */
export type EscapeAction = { kind: "send"; bytes: Buffer } | { kind: "disconnect" } | { kind: "help" };

export const ESCAPE_HELP = (c: string) =>
  ["Supported escape sequences:", ` ${c}.   - disconnect (ends the session)`, ` ${c}?   - this message`, ` ${c}${c}   - send the escape character by typing it twice`, "(Note that escapes are only recognized immediately after newline.)"].join("\r\n");

export class EscapeScanner {
  private atLineStart = true;
  private pending = false;
  private readonly esc: number;

  constructor(escapeChar: string) {
    this.esc = escapeChar.charCodeAt(0);
  }

  /** Splits one chunk of input into bytes to send and escape actions, in order. */
  feed(chunk: Buffer): EscapeAction[] {
    const out: EscapeAction[] = [];
    let start = 0;
    const flush = (end: number) => {
      if (end > start) out.push({ kind: "send", bytes: chunk.subarray(start, end) });
    };
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i] as number;
      if (this.pending) {
        this.pending = false;
        start = i + 1;
        if (b === 0x2e) {
          out.push({ kind: "disconnect" });
          return out; // nothing after a disconnect is sent
        }
        if (b === 0x3f) {
          out.push({ kind: "help" });
          this.atLineStart = true;
          continue;
        }
        if (b === this.esc) {
          out.push({ kind: "send", bytes: Buffer.from([this.esc]) });
          this.atLineStart = false;
          continue;
        }
        out.push({ kind: "send", bytes: Buffer.from([this.esc]) });
        start = i; // the byte itself goes out with what follows
        this.atLineStart = b === 0x0d || b === 0x0a;
        continue;
      }
      if (this.atLineStart && b === this.esc) {
        flush(i);
        this.pending = true;
        start = i + 1;
        continue;
      }
      this.atLineStart = b === 0x0d || b === 0x0a;
    }
    flush(chunk.length);
    return out;
  }
}
