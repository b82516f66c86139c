import { randomInt } from "node:crypto";
import { encodeSequenced } from "@molecule/shared";

/** Messages kept for a resync: young enough to run (older keystrokes are dropped, not run late: the writer's queue limit)… */
export const RESEND_MS = 3000;
/** …and at most this much of them (a flood's coalesced publishes are up to 64 KiB each). */
const RESEND_MAX_BYTES = 256 * 1024;
const RESEND_MAX_MESSAGES = 512;

interface Sent {
  seq: number;
  at: number;
  payload: Buffer;
}

/**
 * One client connection's input and control messages towards the worker, as a numbered stream
 * (bus-codec.ts, encodeSequenced) with the last few seconds of it kept: a worker whose subscriber
 * was away asks for what came after the last one it applied (resync), and gets it again.
 */
export class SentInput {
  /** Random per connection: a worker tells this connection's messages from an earlier one's. */
  readonly stream = randomInt(0, 2 ** 32);
  private seq = 0;
  private kept: Sent[] = [];
  private keptBytes = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Numbers and encodes the next message, and keeps it for a resync. */
  next(m: { data: Buffer } | { control: Buffer }): Buffer {
    const seq = ++this.seq;
    const payload = encodeSequenced(this.stream, seq, m);
    const at = this.now();
    this.kept.push({ seq, at, payload });
    this.keptBytes += payload.length;
    this.evict(at);
    return payload;
  }

  /**
   * What to send again for a worker that applied this stream up to `after`: `from`, the first
   * message it will get again (anything between is gone: too old or too much), and the messages.
   */
  since(after: number): { from: number; payloads: Buffer[] } {
    this.evict(this.now());
    const again = this.kept.filter((s) => s.seq > after);
    return { from: again[0]?.seq ?? this.seq + 1, payloads: again.map((s) => s.payload) };
  }

  private evict(now: number): void {
    for (let s = this.kept[0]; s; s = this.kept[0]) {
      if (this.kept.length <= RESEND_MAX_MESSAGES && this.keptBytes <= RESEND_MAX_BYTES && now - s.at <= RESEND_MS) return;
      this.kept.shift();
      this.keptBytes -= s.payload.length;
    }
  }
}
