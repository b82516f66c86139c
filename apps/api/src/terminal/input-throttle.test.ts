import { describe, expect, it } from "vitest";
import { BUDGET_WAKE_MS, BYTES_PER_TURN, FRAMES_PER_TURN, InputThrottle, type ThrottleClock } from "./input-throttle.ts";

function fakeClock(): ThrottleClock & { ms: number; tick: number } {
  const c = { ms: 1_000_000, tick: 0, now: () => c.ms, turn: () => c.tick };
  return c;
}

describe("InputThrottle", () => {
  it("lets FRAMES_PER_TURN frames through per event-loop turn, then the next turn", () => {
    const clock = fakeClock();
    const t = new InputThrottle(1e9, 1e9, clock);
    for (let i = 0; i < FRAMES_PER_TURN; i++) expect(t.admit(1)).toBe(true);
    expect(t.admit(1)).toBe(false);
    // The buckets are full: only the next turn is needed, no timer.
    expect(t.waitMs()).toBe(0);
    clock.tick++;
    expect(t.admit(1)).toBe(true);
  });

  it("caps the bytes per turn, but one larger frame always passes alone", () => {
    const clock = fakeClock();
    const t = new InputThrottle(1e9, 1e9, clock);
    expect(t.admit(BYTES_PER_TURN * 4)).toBe(true);
    expect(t.admit(1)).toBe(false);
    clock.tick++;
    expect(t.admit(BYTES_PER_TURN - 10)).toBe(true);
    expect(t.admit(11)).toBe(false);
    expect(t.admit(10)).toBe(true);
  });

  it("a byte bucket that went negative by one frame waits until it has refilled, plus a small batch", () => {
    const clock = fakeClock();
    const t = new InputThrottle(1000, 1e9, clock);
    expect(t.admit(1500)).toBe(true); // -500 tokens
    clock.tick++;
    expect(t.admit(1)).toBe(false);
    // 500 bytes at 1000 B/s is 500 ms, plus the wake batch.
    const wait = t.waitMs();
    expect(wait).toBeGreaterThanOrEqual(500 + BUDGET_WAKE_MS);
    expect(wait).toBeLessThanOrEqual(501 + BUDGET_WAKE_MS);
    clock.ms += 499;
    expect(t.admit(1)).toBe(false);
    clock.ms += 2;
    expect(t.admit(1)).toBe(true);
  });

  it("counts messages per second apart from bytes, and the buckets never refill beyond one second's worth", () => {
    const clock = fakeClock();
    const t = new InputThrottle(1e9, 3, clock);
    for (let i = 0; i < 3; i++) expect(t.admit(1)).toBe(true);
    clock.tick++;
    expect(t.admit(1)).toBe(false);
    expect(t.waitMs()).toBe(BUDGET_WAKE_MS);
    clock.ms += 60_000;
    clock.tick++;
    for (let i = 0; i < 3; i++) expect(t.admit(1)).toBe(true);
    expect(t.admit(1)).toBe(false);
  });
});
