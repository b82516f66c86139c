import { describe, expect, it } from "vitest";
import { MIN_WINDOW, RATE_SAMPLE_MS, ReaderWindow } from "./reader-window.ts";

const MiB = 1024 * 1024;

function reader(maxWindow = MiB, from = 0) {
  const clock = { ms: 1000 };
  const r = new ReaderWindow(maxWindow, from, () => clock.ms);
  /** The shell wrote `bytes` more and the bridge sent all the window allows. */
  const produce = (bytes: number) => {
    r.saw(r.known + bytes);
    r.next += Math.min(r.room(), r.known - r.next);
  };
  return { r, clock, produce };
}

/** The client reads `bytesPerSec` for `ms`, acking every 10 ms as the bridge keeps its window full. */
function readFor(t: ReturnType<typeof reader>, bytesPerSec: number, ms: number): string[] {
  const results: string[] = [];
  for (let i = 0; i < ms / 10; i++) {
    t.clock.ms += 10;
    results.push(t.r.consume(Math.min(t.r.next, t.r.acked + (bytesPerSec * 10) / 1000)));
    t.r.next += Math.min(t.r.room(), t.r.known - t.r.next);
  }
  return results;
}

describe("ReaderWindow", () => {
  it("counts an ack once, and none beyond what was sent", () => {
    const { r, produce } = reader();
    produce(1000);
    expect(r.room()).toBe(MiB - 1000);
    expect(r.consume(2000)).toBe("stale");
    expect(r.consume(600)).toBe("ok");
    expect(r.consume(600)).toBe("stale");
    expect(r.consume(500)).toBe("stale");
    expect(r.acked).toBe(600);
    expect(r.room()).toBe(MiB - 400);
  });

  it("shrinks a slow reader's window to its reading speed × (250 ms + 2 RTT), never under 64 KiB", () => {
    const t = reader(8 * MiB);
    t.produce(100 * MiB);
    readFor(t, 400_000, 1000);
    // 400 kB/s × (250 + 2 × 100) ms = 180 kB.
    expect(t.r.window).toBeGreaterThan(170_000);
    expect(t.r.window).toBeLessThan(190_000);
    const slow = reader(8 * MiB);
    slow.produce(100 * MiB);
    readFor(slow, 10_000, 1000);
    expect(slow.r.window).toBe(MIN_WINDOW);
  });

  it("a fast reader keeps the full window; a quiet shell says nothing about the reader", () => {
    const t = reader(MiB);
    t.produce(100 * MiB);
    readFor(t, 50 * MiB, 500);
    expect(t.r.window).toBe(MiB);
    const quiet = reader(MiB);
    quiet.produce(100);
    quiet.clock.ms += 10 * RATE_SAMPLE_MS;
    expect(quiet.r.consume(100)).toBe("ok");
    expect(quiet.r.window).toBe(MiB);
  });

  it("a measured round trip widens the window by two of them (higher samples slowly); a probe is asked for once per interval", () => {
    const t = reader(8 * MiB);
    t.produce(100 * MiB);
    // Asked for until a ping is out.
    expect(readFor(t, 400_000, 300).filter((x) => x === "probe").length).toBeGreaterThan(1);
    t.r.pingSent();
    expect(readFor(t, 400_000, 500)).not.toContain("probe");
    t.r.pong();
    // Not again within the probe interval (5 s) of that ping.
    expect(readFor(t, 400_000, 1000)).not.toContain("probe");
    // A higher round trip counts a quarter (100 ms → 200 ms): 400 kB/s × (250 + 2 × 200) ms = 260 kB.
    expect(t.r.window).toBeGreaterThan(250_000);
    expect(t.r.window).toBeLessThan(270_000);
  });

  it("tells the worker every window/8 consumed, not every ack, unless the worker is near its pause point", () => {
    const { r, produce } = reader(MiB);
    produce(10_000);
    r.consume(100);
    expect(r.takeAck()).toBe(false);
    produce(MiB);
    // The worker has a window unacknowledged as far as it knows: any progress goes to it.
    r.consume(200);
    expect(r.takeAck()).toBe(true);
    expect(r.takeAck()).toBe(false);
  });

  it("a gap skips the lost output and the acks it could never get, and leaves room to go on", () => {
    const { r } = reader(MiB, 10);
    r.skipTo(5 * MiB);
    expect(r.next).toBe(5 * MiB);
    expect(r.known).toBe(5 * MiB);
    expect(r.acked).toBe(5 * MiB);
    // A client that had acked everything before the gap gets output again without acking first.
    expect(r.room()).toBe(MiB);
    expect(r.consume(5 * MiB - 1)).toBe("stale");
  });
});
