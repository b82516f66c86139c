import type { InputThrottle } from "./input-throttle.ts";

/** What the gate holds back while frames wait: the client socket (ws's pause/resume stop reading it). */
export interface Pausable {
  pause(): void;
  resume(): void;
}

/**
 * Every client frame, in order: handed on now if the connection's turn and input budget allow
 * (InputThrottle), else queued with the socket paused (ws still hands over the frames of the chunk it
 * is parsing, so the queue holds at most about one socket read) until the budget lets it through.
 */
export class InputGate {
  private queue: { data: Buffer; isBinary: boolean }[] = [];
  /** The first frame of `queue` not yet handed on (the queue is reset only once drained). */
  private queueAt = 0;
  private wake: { immediate: NodeJS.Immediate } | { timeout: NodeJS.Timeout } | null = null;
  private shut = false;
  private readonly drainNow = () => this.drain();

  constructor(
    private readonly throttle: InputThrottle,
    private readonly socket: Pausable,
    private readonly handle: (data: Buffer, isBinary: boolean) => void,
  ) {}

  offer(data: Buffer, isBinary: boolean): void {
    if (this.shut) return;
    if (this.queueAt === this.queue.length && this.throttle.admit(data.length)) {
      this.handle(data, isBinary);
      return;
    }
    if (this.queueAt === this.queue.length) this.socket.pause();
    this.queue.push({ data, isBinary });
    this.schedule();
  }

  /**
   * The connection is done: what is queued is dropped and no timer is left. A socket paused for the
   * queue is resumed: it must still read the client's answer to the close handshake.
   */
  shutDown(): void {
    if (!this.shut && this.queueAt < this.queue.length) this.socket.resume();
    this.shut = true;
    const wake = this.wake;
    if (wake && "timeout" in wake) clearTimeout(wake.timeout);
    else if (wake) clearImmediate(wake.immediate);
    this.wake = null;
    this.queue = [];
    this.queueAt = 0;
  }

  private drain(): void {
    this.wake = null;
    // `handle` may shut the gate (the connection ended): the loop stops there.
    while (this.queueAt < this.queue.length && !this.shut) {
      const frame = this.queue[this.queueAt]!;
      if (!this.throttle.admit(frame.data.length)) {
        this.schedule();
        return;
      }
      this.queue[this.queueAt++] = undefined as never;
      this.handle(frame.data, frame.isBinary);
    }
    this.queue = [];
    this.queueAt = 0;
    if (!this.shut) this.socket.resume();
  }

  /** Drains the queue on the next turn, or once an empty input budget has refilled a little (InputThrottle.waitMs). */
  private schedule(): void {
    if (this.wake || this.shut) return;
    const wait = this.throttle.waitMs();
    this.wake = wait > 0 ? { timeout: setTimeout(this.drainNow, wait) } : { immediate: setImmediate(this.drainNow) };
  }
}
