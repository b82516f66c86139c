/**
 * Client frames one connection may have handled per event-loop turn (and bytes, though one larger
 * frame always passes alone): the rest waits, with the socket paused, for the next turn, so a client
 * sending thousands of tiny frames cannot hold the loop while other sessions wait for their echo.
 */
export const FRAMES_PER_TURN = 64;
export const BYTES_PER_TURN = 64 * 1024;
/** A throttled connection's queue is woken when this much of its budget has refilled. */
export const BUDGET_WAKE_MS = 10;

/** The event-loop turn this is: bumped by one setImmediate per turn for the whole process, not per frame. */
let turn = 0;
let turnTicking = false;
function currentTurn(): number {
  if (!turnTicking) {
    turnTicking = true;
    setImmediate(() => {
      turn++;
      turnTicking = false;
    });
  }
  return turn;
}

export interface ThrottleClock {
  /** Milliseconds, for the token buckets. */
  now(): number;
  /** A number that changes once per event-loop turn, for the per-turn share. */
  turn(): number;
}

const systemClock: ThrottleClock = { now: Date.now, turn: currentTurn };

/**
 * One connection's input budget: a share of each event-loop turn (FRAMES_PER_TURN, BYTES_PER_TURN)
 * and token buckets for bytes and messages per second.
 */
export class InputThrottle {
  private turnSeen = -1;
  private turnFrames = 0;
  private turnBytes = 0;
  private byteTokens: number;
  private msgTokens: number;
  private lastRefill: number;

  constructor(
    private readonly bytesPerSec: number,
    private readonly msgsPerSec: number,
    private readonly clock: ThrottleClock = systemClock,
  ) {
    this.byteTokens = bytesPerSec;
    this.msgTokens = msgsPerSec;
    this.lastRefill = clock.now();
  }

  /**
   * Whether a frame of `bytes` may be handled now: within this turn's share (one larger frame
   * always passes alone) and the token buckets for bytes and messages (which may go negative by
   * that one frame; the next waits until they are positive again). Charges it if so.
   */
  admit(bytes: number): boolean {
    const t = this.clock.turn();
    if (t !== this.turnSeen) {
      this.turnSeen = t;
      this.turnFrames = 0;
      this.turnBytes = 0;
    }
    if (this.turnFrames >= FRAMES_PER_TURN || (this.turnFrames > 0 && this.turnBytes + bytes > BYTES_PER_TURN)) return false;
    this.refill();
    if (this.byteTokens <= 0 || this.msgTokens <= 0) return false;
    this.turnFrames++;
    this.turnBytes += bytes;
    this.byteTokens -= bytes;
    this.msgTokens -= 1;
    return true;
  }

  /**
   * How long until an empty token bucket holds BUDGET_WAKE_MS of budget again (0: it is not empty,
   * the turn share needs only the next turn): a throttled client is served in small batches, not
   * one frame per timer.
   */
  waitMs(): number {
    this.refill();
    const bytes = this.byteTokens > 0 ? 0 : -this.byteTokens / this.bytesPerSec + BUDGET_WAKE_MS / 1000;
    const msgs = this.msgTokens > 0 ? 0 : -this.msgTokens / this.msgsPerSec + BUDGET_WAKE_MS / 1000;
    return Math.ceil(Math.max(bytes, msgs) * 1000);
  }

  private refill(): void {
    const now = this.clock.now();
    const dt = (now - this.lastRefill) / 1000;
    this.lastRefill = now;
    this.byteTokens = Math.min(this.bytesPerSec, this.byteTokens + dt * this.bytesPerSec);
    this.msgTokens = Math.min(this.msgsPerSec, this.msgTokens + dt * this.msgsPerSec);
  }
}
