/**
 * A client's side of counted input (docs/terminal-protocol.md, "Counted input"), for the CLI
 * and the Canvas alike: the input it gave and the server has not acknowledged, sent again after
 * a re-attach from the last ack (the worker drops what the shell already has). Browser-safe.
 */
export class InputCounter {
  /** Input bytes the server acknowledged: the next connection's `input_from`. */
  acked = 0;
  /** Kept: everything after `acked`, in order. */
  private kept: Uint8Array[] = [];
  private keptLength = 0;
  /** Of what is kept, how much (at its end) has not gone out on any connection yet. */
  private unsent = 0;
  private counting = true;

  /** False once a server showed it does not count (its hello had no input_from). */
  get active(): boolean {
    return this.counting;
  }

  /** Bytes kept (sent or not) until acknowledged. */
  get keptBytes(): number {
    return this.keptLength;
  }

  /** Bytes given while no connection was open, waiting for the next hello. */
  get unsentBytes(): number {
    return this.unsent;
  }

  /** Input given: kept until acknowledged; `sent` says whether it went out now. */
  add(data: Uint8Array, sent: boolean): void {
    // A copy (a Buffer's slice() would be a view of the caller's memory).
    this.kept.push(new Uint8Array(data));
    this.keptLength += data.length;
    if (!sent) this.unsent += data.length;
  }

  /** `input_ack`: the shell has the session's input up to `offset`. */
  ack(offset: number): void {
    let drop = offset - this.acked;
    if (drop <= 0) return;
    this.acked = offset;
    while (drop > 0 && this.kept.length) {
      const b = this.kept[0]!;
      if (b.length <= drop) {
        this.kept.shift();
        this.keptLength -= b.length;
        drop -= b.length;
      } else {
        this.kept[0] = b.subarray(drop);
        this.keptLength -= drop;
        drop = 0;
      }
    }
  }

  /**
   * A connection said hello: what to send now, in order. A counting server (`input_from` in its
   * hello) gets everything kept again. One that does not count ends the counting for good: it
   * gets only what never went out, as a re-attach always sent it (what an earlier connection
   * sent without an ack may have arrived: not sent twice).
   */
  hello(inputFrom: number | undefined): Uint8Array[] {
    if (this.counting && inputFrom === undefined) {
      this.counting = false;
      const out = this.tail(this.unsent);
      this.kept = [];
      this.keptLength = 0;
      this.unsent = 0;
      return out;
    }
    this.unsent = 0;
    return this.counting ? [...this.kept] : [];
  }

  /** The last `n` kept bytes, as chunks. */
  private tail(n: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    let need = n;
    for (let i = this.kept.length - 1; i >= 0 && need > 0; i--) {
      const b = this.kept[i]!;
      out.unshift(b.length <= need ? b : b.subarray(b.length - need));
      need -= Math.min(need, b.length);
    }
    return out;
  }
}
