/**
 * When a v1 client acknowledges output (docs/terminal-protocol.md, Flow control): as soon as
 * `everyBytes` more are consumed, and otherwise once `quietMs` have passed since the first byte
 * left unacknowledged. Not on every caught-up echo: that was one more frame per keystroke through
 * the load balancer and the API node — a wake-up of each, about a fifth of the server CPU per
 * keystroke (docs/benchmark.md) — which flow control does not need: the server's window (at least
 * 64 KiB) is larger than `everyBytes`, so it never waits for an ack it is not sent.
 *
 * Used by the Canvas, the CLI and the bench client, so all three ack the same way. Browser-safe
 * (no Node imports); timers come from the caller, so tests drive them.
 */
export interface AckScheduleOptions {
  everyBytes: number;
  quietMs: number;
  /** Sends `{"type":"ack","offset"}`; false when it could not be sent (not connected): nothing counts as acked. */
  send(offset: number): boolean;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(t: unknown): void;
}

export class AckSchedule {
  private acked = 0;
  private consumedTo = 0;
  private timer: unknown = null;

  constructor(private readonly o: AckScheduleOptions) {}

  /** Offset just past the last byte acknowledged. */
  get offset(): number {
    return this.acked;
  }

  /** A new attachment starts at `offset` (its hello): nothing before it is owed an ack. */
  reset(offset: number): void {
    this.cancel();
    this.acked = this.consumedTo = offset;
  }

  /** Output up to `offset` has been consumed (shown, written out). */
  consumed(offset: number): void {
    if (offset <= this.consumedTo) return;
    this.consumedTo = offset;
    if (this.consumedTo - this.acked >= this.o.everyBytes) this.flush();
    else if (this.timer === null) this.timer = this.o.setTimeout(this.onQuiet, this.o.quietMs);
  }

  /** Acks everything consumed now (for example before a deliberate close). */
  flush(): void {
    this.cancel();
    if (this.consumedTo > this.acked && this.o.send(this.consumedTo)) this.acked = this.consumedTo;
  }

  /** Stops the timer (connection gone or disposed); what is owed stays owed until `flush` or `reset`. */
  cancel(): void {
    if (this.timer === null) return;
    this.o.clearTimeout(this.timer);
    this.timer = null;
  }

  private readonly onQuiet = () => {
    this.timer = null;
    this.flush();
  };
}
