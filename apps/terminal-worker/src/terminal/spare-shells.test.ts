import { randomUUID } from "node:crypto";
import * as pty from "node-pty";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "@molecule/shared";
import { SPARE_GATE_SCRIPT, SPARE_READY } from "../providers/sandbox-argv.ts";
import type { SpareSpec } from "../providers/index.ts";
import { createSparePool, type SparePool } from "./spare-shells.ts";
import type { SpawnPty } from "./types.ts";

const log = createLogger("test", process.env.TEST_LOG_LEVEL ?? "silent");
const size = { cols: 80, rows: 24 };

/**
 * The real gate script in a real PTY; what it releases into stands in for bwrap: a
 * shell that prints the arguments it was given, its window size and whether the
 * terminal echoes, then waits.
 */
function spec(key: string, sessionId = randomUUID(), term = "xterm-kitty"): SpareSpec {
  const after = ["/bin/sh", "-c", 'printf "<%s>" "$@"; printf "\\nsize=%s\\n" "$(stty size)"; stty -a | grep -o -- " -*echo " | head -1; exec sleep 30', "stand-in"];
  return {
    key,
    template: { file: "/bin/sh", args: ["-c", SPARE_GATE_SCRIPT, "sh", "/bin/the-shell", ...after], env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } },
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

function collect(p: pty.IPty): { text: () => string } {
  let out = "";
  p.onData((d) => (out += d.toString()));
  return { text: () => out };
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

function makePool(o: { max?: number; timers?: ReturnType<typeof manualTimers> } = {}): SparePool {
  pool = createSparePool({ spawn, spawnTurn: async () => {}, log, max: o.max ?? 4, idleMs: 60_000, readyMarker: SPARE_READY, ...(o.timers ? { timers: o.timers } : {}) });
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
    expect(text).toContain(`<--setenv><MOLECULE_SESSION_ID><${sid}><--setenv><TERM><xterm-kitty><--></bin/the-shell><--login>`);
    expect(text).toContain("size=40 132");
    expect(text).toMatch(/ echo /); // not " -echo ": the saved modes came back
    expect(text).not.toContain(SPARE_READY);
    expect(text).not.toContain(sid + " xterm-kitty"); // the release line was never echoed
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
    const code = await new Promise<number>((r) => shell.onExit((e) => r(e.exitCode)));
    expect(code).toBe(126);
    expect(out.text()).not.toContain("<--setenv>");
  });

  it("is bounded: past `max` the oldest spare is stopped", async () => {
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
