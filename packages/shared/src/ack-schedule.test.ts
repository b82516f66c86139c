import { describe, expect, it } from "vitest";
import { AckSchedule } from "./ack-schedule.ts";

function setup(o: { connected?: () => boolean } = {}) {
  const sent: number[] = [];
  const timers = new Map<number, { at: number; fn: () => void }>();
  let now = 0;
  let seq = 0;
  const acks = new AckSchedule({
    everyBytes: 1000,
    quietMs: 100,
    send: (offset) => {
      if (o.connected && !o.connected()) return false;
      sent.push(offset);
      return true;
    },
    setTimeout: (fn, ms) => {
      timers.set(++seq, { at: now + ms, fn });
      return seq;
    },
    clearTimeout: (t) => timers.delete(t as number),
  });
  const advance = (ms: number) => {
    now += ms;
    for (const [id, t] of [...timers].sort((a, b) => a[1].at - b[1].at)) {
      if (t.at > now) continue;
      timers.delete(id);
      t.fn();
    }
  };
  return { acks, sent, advance, pendingTimers: () => timers.size };
}

describe("AckSchedule", () => {
  it("does not ack each small output (an echo) but all of it once quiet, with one timer", () => {
    const t = setup();
    for (let i = 1; i <= 20; i++) t.acks.consumed(i * 3);
    expect(t.sent).toEqual([]);
    expect(t.pendingTimers()).toBe(1);
    t.advance(99);
    expect(t.sent).toEqual([]);
    t.advance(1);
    expect(t.sent).toEqual([60]);
    expect(t.acks.offset).toBe(60);
    // Nothing owed: no timer, nothing sent.
    t.advance(1000);
    expect(t.sent).toEqual([60]);
    expect(t.pendingTimers()).toBe(0);
  });

  it("acks at once every `everyBytes` consumed, so a flood never waits for the timer", () => {
    const t = setup();
    for (let i = 1; i <= 10; i++) t.acks.consumed(i * 400);
    expect(t.sent).toEqual([1200, 2400, 3600]);
    t.advance(100);
    expect(t.sent).toEqual([1200, 2400, 3600, 4000]);
  });

  it("ignores offsets it has seen, and a reset starts from the new attachment's offset", () => {
    const t = setup();
    t.acks.consumed(500);
    t.acks.consumed(400);
    t.acks.reset(5000);
    t.advance(1000);
    expect(t.sent).toEqual([]);
    t.acks.consumed(4000);
    t.advance(1000);
    expect(t.sent).toEqual([]);
    t.acks.consumed(5100);
    t.advance(100);
    expect(t.sent).toEqual([5100]);
  });

  it("a send that could not go out (not connected) leaves the bytes owed", () => {
    let up = false;
    const t = setup({ connected: () => up });
    t.acks.consumed(50);
    t.advance(100);
    expect(t.sent).toEqual([]);
    expect(t.acks.offset).toBe(0);
    up = true;
    t.acks.flush();
    expect(t.sent).toEqual([50]);
  });

  it("cancel stops the timer without sending", () => {
    const t = setup();
    t.acks.consumed(10);
    t.acks.cancel();
    t.advance(1000);
    expect(t.sent).toEqual([]);
    expect(t.pendingTimers()).toBe(0);
  });
});
