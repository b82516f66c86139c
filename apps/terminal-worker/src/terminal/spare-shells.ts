import type { IDisposable, IPty } from "node-pty";
import type { Logger } from "@molecule/shared";
import type { SpareSpec } from "../providers/index.ts";
import type { SpawnPty, SpawnTurn } from "./types.ts";

/**
 * Spare shells: per workspace template (SpareSpec), one process started ahead of
 * time that has already joined the workspace's cgroups, set its limits and dropped
 * to its uid, and waits at a gate before its namespaces (sandbox-argv.ts). An open
 * that finds one writes the session's release line instead of forking and running
 * that chain: on cgroup v1 the join alone waits for an RCU grace period (ms), and it
 * is the larger part of a sandboxed open. The pool replaces a spare as it hands it
 * out, so a workspace whose shells open one after another keeps finding one; a
 * spare nobody takes for `idleMs` is stopped. One pool per runner; it owns its spares.
 */
export interface SparePoolOptions {
  spawn: SpawnPty;
  spawnTurn: SpawnTurn;
  log: Logger;
  /** Spares kept at most (the oldest goes first); 0: none. */
  max: number;
  /** A spare not taken for this long is stopped. */
  idleMs: number;
  /** What a spare prints once it waits at its gate. */
  readyMarker: string;
  timers?: { setTimeout(fn: () => void, ms: number): unknown; clearTimeout(t: unknown): void };
}

export interface SparePool {
  /** A waiting spare for `spec`, released as this session's shell at `size`; null: none ready. */
  take(spec: SpareSpec, size: { cols: number; rows: number }): IPty | null;
  /** Starts a spare for `spec` unless one exists (or is starting). */
  replenish(spec: SpareSpec, size: { cols: number; rows: number }): void;
  /** Stops every spare; none starts after this. */
  close(): void;
  /** Spares waiting or starting, and how many were handed out since the start. */
  stats(): { spares: number; ready: number; taken: number };
}

/** Output a spare may print before its marker (an error from the chain): beyond it, something is wrong. */
const MAX_PREAMBLE = 4096;

interface Spare {
  pty: IPty | null;
  ready: boolean;
  preamble: string;
  subs: IDisposable[];
  timer: unknown;
}

export function createSparePool(o: SparePoolOptions): SparePool {
  const timers = o.timers ?? { setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms).unref(), clearTimeout: (t: unknown) => clearTimeout(t as NodeJS.Timeout) };
  // Insertion order is age: the first entry is the one evicted when full.
  const spares = new Map<string, Spare>();
  let closed = false;
  let taken = 0;

  function detach(s: Spare): void {
    for (const d of s.subs) d.dispose();
    s.subs = [];
    if (s.timer !== undefined) timers.clearTimeout(s.timer);
    s.timer = undefined;
  }

  function stop(key: string, s: Spare, why: string): void {
    if (spares.get(key) === s) spares.delete(key);
    detach(s);
    o.log.debug({ spare: key, why }, "spare shell stopped");
    try {
      s.pty?.kill("SIGKILL");
    } catch (err) {
      o.log.debug({ err, spare: key }, "spare shell already gone");
    }
  }

  function start(key: string, spec: SpareSpec, size: { cols: number; rows: number }, s: Spare): void {
    if (closed || spares.get(key) !== s) return;
    const t = spec.template;
    try {
      s.pty = o.spawn(t.file, t.args, { name: "xterm-256color", cols: size.cols, rows: size.rows, cwd: t.cwd, env: t.env, encoding: null });
    } catch (err) {
      spares.delete(key);
      o.log.warn({ err, spare: key }, "a spare shell could not be started");
      return;
    }
    s.subs.push(
      s.pty.onData((d) => {
        if (s.ready) return stop(key, s, "output while waiting at the gate");
        s.preamble += (d as unknown as Buffer).toString("latin1");
        if (s.preamble.includes(o.readyMarker)) {
          s.ready = true;
          if (s.preamble.trim() !== o.readyMarker) o.log.warn({ spare: key, output: s.preamble.slice(0, 512) }, "spare shell printed more than its marker");
        } else if (s.preamble.length > MAX_PREAMBLE) {
          o.log.warn({ spare: key, output: s.preamble.slice(0, 512) }, "spare shell never reached its gate");
          stop(key, s, "no marker");
        }
      }),
      s.pty.onExit(({ exitCode }) => {
        if (spares.get(key) !== s) return;
        spares.delete(key);
        detach(s);
        // Usually its workspace went away (its cgroup killed) or hit its process limit.
        o.log.info({ spare: key, exit_code: exitCode, output: s.preamble.slice(0, 512) }, "spare shell exited before use");
      }),
    );
    s.timer = timers.setTimeout(() => stop(key, s, "idle"), o.idleMs);
  }

  return {
    take(spec, size) {
      const s = spares.get(spec.key);
      if (!s?.ready || !s.pty) return null;
      spares.delete(spec.key);
      detach(s);
      const pty = s.pty;
      pty.resize(size.cols, size.rows);
      pty.write(spec.release);
      taken++;
      return pty;
    },
    replenish(spec, size) {
      if (closed || o.max <= 0 || spares.has(spec.key)) return;
      while (spares.size >= o.max) {
        const [oldKey, old] = spares.entries().next().value as [string, Spare];
        stop(oldKey, old, "pool full");
      }
      const s: Spare = { pty: null, ready: false, preamble: "", subs: [], timer: undefined };
      spares.set(spec.key, s);
      // Forks take turns with the sessions' own (spawn-turns.ts).
      void o.spawnTurn().then(() => start(spec.key, spec, size, s));
    },
    close() {
      closed = true;
      for (const [key, s] of [...spares]) stop(key, s, "worker closing");
    },
    stats() {
      return { spares: spares.size, ready: [...spares.values()].filter((s) => s.ready).length, taken };
    },
  };
}
