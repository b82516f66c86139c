/**
 * A client that reads slowly gets a smaller window: about this much of its
 * reading time in flight (plus two network round trips, so the window never
 * throttles a fast reader on a slow link), never under MIN_WINDOW. Everything in
 * flight must be read before the answer to a Ctrl-C shows.
 */
export const WINDOW_READ_MS = 250;
export const MIN_WINDOW = 64 * 1024;
export const RATE_SAMPLE_MS = 100;
export const RTT_PROBE_MS = 5000;

/**
 * One client's output offsets and flow window: what was sent, consumed and is known to exist, the
 * window sized to how fast the client reads, and when the worker must hear what was consumed.
 * Pure bookkeeping: the bridge does the sending.
 */
export class ReaderWindow {
  /** Next output offset to send to the client. */
  next: number;
  /** Output the client has consumed (v1: acks; raw: written to the socket). */
  acked: number;
  /** Highest output end offset known to exist (from live messages or the log). */
  known: number;
  /** Current window: the maximum, or less for a slow reader (measure). */
  window: number;
  private forwardedAck: number;
  private forwardedWindow: number;
  /** The client's reading speed (bytes/s, 0 until measured) and the interval being measured. */
  private readRate = 0;
  private sampleAt = 0;
  private sampleAcked = 0;
  /** Network round trip (WebSocket ping/pong, answered by the client's network stack, not its renderer). */
  private rttMs = 100;
  private pingAt = 0;
  private lastPing = 0;

  constructor(
    private readonly maxWindow: number,
    from: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.next = from;
    this.acked = from;
    this.forwardedAck = from;
    this.known = from;
    this.window = maxWindow;
    this.forwardedWindow = maxWindow;
  }

  /** Bytes that may still be sent before the client consumes more. */
  room(): number {
    return this.window - (this.next - this.acked);
  }

  /** Output up to `end` exists. */
  saw(end: number): void {
    if (end > this.known) this.known = end;
  }

  /**
   * The client consumed up to `offset`. "stale": already consumed or never sent, nothing changed;
   * "probe": counted, and a round-trip measurement is due (send a ping, then pingSent).
   */
  consume(offset: number): "stale" | "ok" | "probe" {
    if (offset <= this.acked || offset > this.next) return "stale";
    this.acked = offset;
    return this.measure() ? "probe" : "ok";
  }

  /**
   * Output from `next` up to `to` is gone from the log: skip it, and count everything before it as
   * acknowledged. The client's acks for bytes sent before the gap are ignored from here on (stale),
   * so counting them as in flight would leave no room until an ack that can only follow new output:
   * a client that fell behind would stall for good. At most one window more is in flight, once.
   */
  skipTo(to: number): void {
    this.next = to;
    if (this.acked < to) this.acked = to;
    if (to > this.known) this.known = to;
  }

  /**
   * Whether the worker must be told what the client consumed (then `acked` and `window` are what to
   * send), so it pauses or resumes the PTY: every window/8 consumed, or on any progress once the
   * worker may be near its pause point (it pauses when a window is unacknowledged as far as it knows).
   * Not on every ack: a browser acks every keystroke's echo.
   */
  takeAck(): boolean {
    const delta = this.acked - this.forwardedAck;
    // A window that changed by a quarter or more goes to the worker at once.
    const windowMoved = Math.abs(this.window - this.forwardedWindow) >= this.forwardedWindow / 4;
    if (delta <= 0 && !windowMoved) return false;
    if (windowMoved || delta >= this.window / 8 || this.known - this.forwardedAck >= this.window / 2) {
      this.forwardedAck = this.acked;
      this.forwardedWindow = this.window;
      return true;
    }
    return false;
  }

  pingSent(): void {
    this.pingAt = this.lastPing = this.now();
  }

  pong(): void {
    if (!this.pingAt) return;
    const rtt = this.now() - this.pingAt;
    this.pingAt = 0;
    // Lower samples win at once; higher ones only slowly (a queue, not the link).
    this.rttMs = rtt < this.rttMs ? rtt : this.rttMs * 0.75 + rtt * 0.25;
  }

  /**
   * Measures how fast the client reads while it has output waiting (not while the shell is quiet),
   * and sizes the window to it: see WINDOW_READ_MS. True when a round-trip probe is due.
   */
  private measure(): boolean {
    const now = this.now();
    const workerAtWindow = this.known - this.forwardedAck >= (this.forwardedWindow * 7) / 8;
    if (this.next >= this.known && this.next - this.acked < MIN_WINDOW / 4 && !workerAtWindow) {
      // Caught up with everything the shell wrote (and not held back by the window):
      // this says nothing about the client's speed.
      this.sampleAt = 0;
      return false;
    }
    if (this.sampleAt === 0) {
      this.sampleAt = now;
      this.sampleAcked = this.acked;
      return false;
    }
    const dt = now - this.sampleAt;
    if (dt < RATE_SAMPLE_MS) return false;
    const rate = ((this.acked - this.sampleAcked) * 1000) / dt;
    this.readRate = this.readRate === 0 ? rate : (this.readRate + rate) / 2;
    this.sampleAt = now;
    this.sampleAcked = this.acked;
    const want = (this.readRate * (WINDOW_READ_MS + 2 * this.rttMs)) / 1000;
    this.window = Math.round(Math.min(this.maxWindow, Math.max(MIN_WINDOW, want)));
    return !this.pingAt && (this.lastPing === 0 || now - this.lastPing >= RTT_PROBE_MS);
  }
}
