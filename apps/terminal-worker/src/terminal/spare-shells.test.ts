import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pty from "node-pty";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createLogger } from "@molecule/shared";
import { SPARE_GATE_SCRIPT, SPARE_READY } from "../providers/sandbox-argv.ts";
import type { SpareSpec } from "../providers/index.ts";
import { createSparePool, releaseEchoFilter, type SparePool } from "./spare-shells.ts";
import type { SpawnPty } from "./types.ts";

const log = createLogger("test", process.env.TEST_LOG_LEVEL ?? "silent");
const size = { cols: 80, rows: 24 };

/**
 * The real gate script in a real PTY; the shell it execs is a stand-in that prints how it
 * was started (its arguments, session id, TERM), its window size and whether the terminal
 * echoes, then waits.
 */
const dir = mkdtempSync(join(tmpdir(), "spare-test-"));
const standIn = join(dir, "the-shell");
writeFileSync(
  standIn,
  '#!/bin/sh\nprintf "<%s>" "$0" "$@"; printf "\\nsid=%s term=%s\\nsize=%s\\n" "$MOLECULE_SESSION_ID" "$TERM" "$(stty size)"; stty -a | grep -o -- " -*echo " | head -1; exec sleep 30\n',
  { mode: 0o755 },
);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function spec(key: string, sessionId = randomUUID(), term = "xterm-kitty"): SpareSpec {
  return {
    key,
    template: { file: "/bin/sh", args: ["-c", SPARE_GATE_SCRIPT, "sh", standIn], env: { PATH: process.env.PATH ?? "/usr/bin:/bin", TERM: "dumb" } },
    release: `${sessionId} ${term}\n`,
  };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** What the session would show: the output with the release line's echo taken off, as session.ts does. */
function collect(t: { pty: pty.IPty; dropEcho: (b: Buffer) => Buffer }): { text: () => string; raw: () => string } {
  let out = "";
  let raw = "";
  t.pty.onData((d) => {
    raw += d.toString();
    out += t.dropEcho(d as unknown as Buffer).toString();
  });
  return { text: () => out, raw: () => raw };
}

/** Timers the test fires by hand. */
function manualTimers() {
  const pending = new Map<number, () => void>();
  let n = 0;
  return {
    pending,
    setTimeout: (fn: () => void) => {
      pending.set(++n, fn);
      return n;
    },
    clearTimeout: (t: unknown) => void pending.delete(t as number),
    fireAll: () => {
      for (const [k, fn] of [...pending]) {
        pending.delete(k);
        fn();
      }
    },
  };
}

let pool: SparePool | undefined;
const spawned: pty.IPty[] = [];
const spawn: SpawnPty = (file, args, opts) => {
  const p = pty.spawn(file, args, opts as never);
  spawned.push(p);
  return p;
};
afterEach(() => {
  pool?.close();
  for (const p of spawned.splice(0)) {
    try {
      p.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});

function makePool(o: { max?: number; depth?: number; timers?: ReturnType<typeof manualTimers> } = {}): SparePool {
  pool = createSparePool({ spawn, spawnTurn: async () => {}, log, max: o.max ?? 4, depth: o.depth ?? 1, idleMs: 60_000, readyMarker: SPARE_READY, ...(o.timers ? { timers: o.timers } : {}) });
  return pool;
}

describe("spare shells", () => {
  it("a spare waits at its gate, then runs as the session's shell: its id, TERM and size, echo back on, nothing of the gate on screen", async () => {
    const p = makePool();
    const sid = randomUUID();
    const s = spec("ws-1", sid);
    expect(p.take(s, size)).toBeNull(); // none yet
    p.replenish(s, size);
    p.replenish(s, size); // one per template
    expect(p.stats().spares).toBe(1);
    await until(() => p.stats().ready === 1);
    const shell = p.take(s, { cols: 132, rows: 40 });
    expect(shell).not.toBeNull();
    const out = collect(shell!);
    await until(() => out.text().includes("echo"));
    const text = out.text();
    expect(text).toContain(`<${standIn}><--login>`);
    expect(text).toContain(`sid=${sid} term=xterm-kitty`);
    expect(text).toContain("size=40 132");
    expect(text).toMatch(/ echo /); // the terminal's modes as the shell would have them
    expect(text).not.toContain(SPARE_READY);
    expect(out.raw().startsWith(`${sid} xterm-kitty\r\n`)).toBe(true); // the terminal echoed the release line…
    expect(text).not.toContain(sid + " xterm-kitty"); // …and it is not on screen
    expect(p.stats()).toMatchObject({ spares: 0, taken: 1 });
    expect(p.take(s, size)).toBeNull(); // handed out once
  });

  it("a release line that is not an id and a TERM runs nothing", async () => {
    const p = makePool();
    const s = { ...spec("ws-bad"), release: "$(touch /tmp/x);id xterm\n" };
    p.replenish(s, size);
    await until(() => p.stats().ready === 1);
    const shell = p.take(s, size)!;
    const out = collect(shell);
    const code = await new Promise<number>((r) => shell.pty.onExit((e) => r(e.exitCode)));
    expect(code).toBe(126);
    expect(out.text()).not.toContain("<--login>");
  });

  it("the echo filter takes the release echo off however the output is split, and passes on what does not match", () => {
    const echo = Buffer.from("abc 1\r\n");
    const f = releaseEchoFilter(echo, log);
    expect(f(Buffer.from("ab")).toString()).toBe("");
    expect(f(Buffer.from("c 1\r\n$ ")).toString()).toBe("$ ");
    expect(f(Buffer.from("more")).toString()).toBe("more");
    const g = releaseEchoFilter(echo, log);
    expect(g(Buffer.from("ab")).toString()).toBe("");
    expect(g(Buffer.from("X")).toString()).toBe("abX"); // not the echo: nothing lost
    expect(g(Buffer.from("c 1")).toString()).toBe("c 1");
  });

  it("keeps `depth` spares per template, so shells opened back to back each find one", async () => {
    const p = makePool({ depth: 2 });
    const s = spec("ws-deep");
    p.replenish(s, size);
    await until(() => p.stats().ready === 2);
    expect(p.take(s, size)).not.toBeNull();
    p.replenish(s, size); // its replacement starts…
    expect(p.take(s, size)).not.toBeNull(); // …and the next open takes the other, already waiting
    expect(p.stats().taken).toBe(2);
    await until(() => p.stats().ready === 1);
  });

  it("is bounded: past `max` the least recently used workspace's spare is stopped", async () => {
    const p = makePool({ max: 2 });
    for (const k of ["a", "b"]) p.replenish(spec(k), size);
    await until(() => p.stats().ready === 2);
    const first = spawned[0]!;
    p.replenish(spec("c"), size);
    await until(() => !alive(first.pid));
    await until(() => p.stats().ready === 2);
    expect(p.take(spec("a"), size)).toBeNull();
    expect(p.take(spec("c"), size)).not.toBeNull();
  });

  it("a spare unused for idleMs is stopped; one that dies before use is never handed out", async () => {
    const timers = manualTimers();
    const p = makePool({ timers });
    p.replenish(spec("idle"), size);
    p.replenish(spec("killed"), size);
    await until(() => p.stats().ready === 2);
    const [idle, killed] = spawned as [pty.IPty, pty.IPty];
    process.kill(killed.pid, "SIGKILL"); // its workspace destroyed (cgroup killed), say
    await until(() => p.stats().spares === 1);
    expect(p.take(spec("killed"), size)).toBeNull();
    timers.fireAll();
    await until(() => !alive(idle.pid));
    expect(p.stats().spares).toBe(0);
    expect(p.take(spec("idle"), size)).toBeNull();
  });

  it("close stops every spare and starts no more", async () => {
    const p = makePool();
    p.replenish(spec("x"), size);
    await until(() => p.stats().ready === 1);
    const x = spawned[0]!;
    p.close();
    await until(() => !alive(x.pid));
    p.replenish(spec("y"), size);
    expect(p.stats().spares).toBe(0);
    expect(spawned).toHaveLength(1);
  });
});
