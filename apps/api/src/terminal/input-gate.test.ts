import { describe, expect, it } from "vitest";
import { InputGate } from "./input-gate.ts";
import { FRAMES_PER_TURN, InputThrottle } from "./input-throttle.ts";

function gate(bytesPerSec: number, msgsPerSec: number) {
  const socket = { paused: 0, resumed: 0, pause: () => void socket.paused++, resume: () => void socket.resumed++ };
  const handled: string[] = [];
  const g = new InputGate(new InputThrottle(bytesPerSec, msgsPerSec), socket, (data) => handled.push(data.toString()));
  return { g, socket, handled };
}

/** Waits for `done`, one event-loop turn at a time (the gate drains on turns and short timers). */
async function until(done: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

const frames = (n: number) => Array.from({ length: n }, (_, i) => String(i));

describe("InputGate", () => {
  it("hands a turn's share on at once, queues the rest with the socket paused, and keeps the order", async () => {
    const { g, socket, handled } = gate(1e9, 1e9);
    for (const f of frames(200)) g.offer(Buffer.from(f), true);
    expect(handled).toHaveLength(FRAMES_PER_TURN);
    expect(socket.paused).toBe(1);
    await until(() => handled.length === 200);
    expect(handled).toEqual(frames(200));
    expect(socket.resumed).toBe(1);
  });

  it("lets frames through no faster than the message budget", async () => {
    const { g, handled } = gate(1e9, 100);
    const t0 = performance.now();
    for (const f of frames(150)) g.offer(Buffer.from(f), true);
    await until(() => handled.length === 150);
    // 100 at once, the other 50 at 100 per second.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(450);
    expect(handled).toEqual(frames(150));
  });

  it("after shutDown nothing queued is handed on, and the paused socket is resumed once (to read the close handshake)", async () => {
    const { g, socket, handled } = gate(1e9, 1e9);
    for (const f of frames(150)) g.offer(Buffer.from(f), true);
    g.shutDown();
    g.shutDown();
    g.offer(Buffer.from("late"), true);
    // The gate's drain was queued for the next turn before this: immediates run in order.
    await new Promise((resolve) => setImmediate(resolve));
    expect(handled).toHaveLength(FRAMES_PER_TURN);
    expect(socket.resumed).toBe(1);
  });
});
