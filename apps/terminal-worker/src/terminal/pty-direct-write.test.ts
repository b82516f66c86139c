import fs from "node:fs";
import * as pty from "node-pty";
import { afterEach, describe, expect, it, vi } from "vitest";
import { waitFor } from "../../../../test/helpers/http.ts";
import { dropQueuedInput, writeKeystrokesDirectly } from "./pty-direct-write.ts";

afterEach(() => vi.restoreAllMocks());

function shell(script: string) {
  const p = pty.spawn("/bin/sh", ["-c", script], { cols: 80, rows: 24, env: { PATH: "/usr/bin:/bin" } });
  writeKeystrokesDirectly(p);
  let out = "";
  p.onData((d) => (out += d));
  const exited = new Promise<void>((resolve) => p.onExit(() => resolve()));
  return { p, out: () => out, exited };
}

describe("writing a shell's input", () => {
  it("keystrokes go straight to the PTY and in order, a burst the shell does not take waits in node-pty's queue", async () => {
    const s = shell("stty raw -echo; echo up; exec cat");
    await waitFor(async () => s.out().includes("up"), 10_000, 5);
    for (const k of "abc") s.p.write(k);
    s.p.write("d".repeat(200_000));
    s.p.write("e");
    await waitFor(async () => s.out().endsWith("e"), 10_000, 5);
    expect(s.out().replace(/^[\s\S]*?up\r?\n/, "")).toBe(`abc${"d".repeat(200_000)}e`);
    s.p.kill();
    await s.exited;
  });

  it("input still queued for a shell that is killed is dropped: no write reaches the PTY after it (node-pty would print EBADF on stderr)", async () => {
    // node-pty writes through the CJS fs module: every write it issues is seen here.
    const writes = vi.spyOn(fs, "write");
    // A shell that never reads: a large write stays queued, node-pty retrying it on every turn.
    const s = shell("echo up; exec sleep 30");
    await waitFor(async () => s.out().includes("up"), 10_000, 5);
    s.p.write("x".repeat(1024 * 1024));
    const queue = (s.p as unknown as { _writeStream: { _writeQueue: unknown[] } })._writeStream._writeQueue;
    expect(queue.length).toBeGreaterThan(0);
    dropQueuedInput(s.p);
    // One write may still be in flight in the thread pool (issued before the drop); none after it.
    const issued = writes.mock.calls.length;
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    expect(writes.mock.calls.length).toBe(issued);
    s.p.kill("SIGKILL");
    await s.exited;
  });
});
