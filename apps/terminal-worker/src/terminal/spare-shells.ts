import type { IDisposable, IPty } from "node-pty";
import type { Logger } from "@molecule/shared";
import type { SpareSpec } from "../providers/index.ts";
import { spareReleaseEcho } from "../providers/sandbox-argv.ts";
import type { SpawnPty, SpawnTurn } from "./types.ts";

/**
 * Spare shells: per workspace template (SpareSpec), one sandbox started ahead of
 * time — cgroups joined, limits set, uid dropped, namespaces and mounts made — that
 * waits at a gate where its shell would start (sandbox-argv.ts). An open that finds
 * one writes the session's release line instead of forking that chain: the cgroup
 * join (an RCU grace period on v1) and bwrap's namespaces are most of a sandboxed
 * open. The pool replaces a spare as it hands it out, so a workspace whose shells
 * open one after another keeps finding one; a spare nobody takes for `idleMs` is
 * stopped. One pool per runner; it owns its spares.
 */
export interface SparePoolOptions {
  spawn: SpawnPty;
  spawnTurn: SpawnTurn;
  log: Logger;
  /** Spares kept at most (the least recently used workspace's go first); 0: none. */
  max: number;
  /**
   * Spares kept per template (default SPARE_DEPTH, 2): with one, a shell opened right after the last one
   * took it finds its replacement still starting.
   */
  depth?: number;
  /** A spare not taken for this long is stopped. */
  idleMs: number;
  /** What a spare prints once it waits at its gate. */
  readyMarker: string;
  /** A spare handed out, after its release line was written: `echoBytes` of output to come are that line's echo (metrics start counting here). */
  onTaken?: (pty: IPty, echoBytes: number) => void;
  timers?: { setTimeout(fn: () => void, ms: number): unknown; clearTimeout(t: unknown): void };
}

export interface SparePool {
  /**
   * A waiting spare for `spec`, released as this session's shell at `size`; null: none ready.
   * Its first output is the echo of the release line: `dropEcho` takes it off (releaseEchoFilter).
   */
  take(spec: SpareSpec, size: { cols: number; rows: number }): { pty: IPty; dropEcho: (chunk: Buffer) => Buffer } | null;
  /** Starts spares for `spec` up to the depth (counting those still starting). */
  replenish(spec: SpareSpec, size: { cols: number; rows: number }): void;
  /** Stops every spare; none starts after this. */
  close(): void;
  /** Spares waiting or starting, and how many were handed out since the start. */
  stats(): { spares: number; ready: number; taken: number };
}

/** Spares kept per template unless told otherwise. */
export const SPARE_DEPTH = 2;

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
  const depth = Math.max(1, o.depth ?? SPARE_DEPTH);
  // Insertion order is recency of use: the first key's spares are evicted first when full.
  const spares = new Map<string, Spare[]>();
  let total = 0;
  let closed = false;
  let taken = 0;

  function remove(key: string, s: Spare): boolean {
    const list = spares.get(key);
    const i = list ? list.indexOf(s) : -1;
    if (!list || i < 0) return false;
    list.splice(i, 1);
    total--;
    if (list.length === 0) spares.delete(key);
    return true;
  }

  function detach(s: Spare): void {
    for (const d of s.subs) d.dispose();
    s.subs = [];
    if (s.timer !== undefined) timers.clearTimeout(s.timer);
    s.timer = undefined;
  }

  function stop(key: string, s: Spare, why: string): void {
    remove(key, s);
    detach(s);
    o.log.debug({ spare: key, why }, "spare shell stopped");
    try {
      s.pty?.kill("SIGKILL");
    } catch (err) {
      o.log.debug({ err, spare: key }, "spare shell already gone");
    }
  }

  function start(key: string, spec: SpareSpec, size: { cols: number; rows: number }, s: Spare): void {
    if (closed || !spares.get(key)?.includes(s)) return;
    const t = spec.template;
    try {
      s.pty = o.spawn(t.file, t.args, { name: "xterm-256color", cols: size.cols, rows: size.rows, cwd: t.cwd, env: t.env, encoding: null });
    } catch (err) {
      remove(key, s);
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
        if (!remove(key, s)) return;
        detach(s);
        // Usually its workspace went away (its cgroup killed) or hit its process limit.
        o.log.info({ spare: key, exit_code: exitCode, output: s.preamble.slice(0, 512) }, "spare shell exited before use");
      }),
    );
    s.timer = timers.setTimeout(() => stop(key, s, "idle"), o.idleMs);
  }

  return {
    take(spec, size) {
      const s = spares.get(spec.key)?.find((x) => x.ready && x.pty);
      if (!s?.pty) return null;
      remove(spec.key, s);
      detach(s);
      const pty = s.pty;
      pty.resize(size.cols, size.rows);
      pty.write(spec.release);
      taken++;
      const echo = spareReleaseEcho(spec.release);
      o.onTaken?.(pty, echo.length);
      return { pty, dropEcho: releaseEchoFilter(echo, o.log) };
    },
    replenish(spec, size) {
      if (closed || o.max <= 0) return;
      const list = spares.get(spec.key) ?? [];
      // Most recently used last.
      spares.delete(spec.key);
      spares.set(spec.key, list);
      while (list.length < depth) {
        if (total >= o.max) {
          const [oldKey, oldList] = spares.entries().next().value as [string, Spare[]];
          if (oldList === list && list.length > 0) break; // full with this workspace's own
          if (oldList.length === 0) {
            spares.delete(oldKey);
            continue;
          }
          stop(oldKey, oldList[0]!, "pool full");
          continue;
        }
        const s: Spare = { pty: null, ready: false, preamble: "", subs: [], timer: undefined };
        list.push(s);
        total++;
        // Forks take turns with the sessions' own (spawn-turns.ts).
        void o.spawnTurn().then(() => start(spec.key, spec, size, s));
      }
      if (list.length === 0) spares.delete(spec.key);
    },
    close() {
      closed = true;
      for (const [key, list] of [...spares]) for (const s of [...list]) stop(key, s, "worker closing");
    },
    stats() {
      const all = [...spares.values()].flat();
      return { spares: all.length, ready: all.filter((s) => s.ready).length, taken };
    },
  };
}

/**
 * Takes `echo` off the start of the output, chunk by chunk. The terminal echoes the release line
 * as the worker writes it, before the gate can even read it, so it comes first; output that does
 * not start with it (never expected) is passed on whole from there, and logged.
 */
export function releaseEchoFilter(echo: Buffer, log: Logger): (chunk: Buffer) => Buffer {
  let matched = 0;
  return (chunk) => {
    if (matched < 0 || matched === echo.length) return chunk;
    const n = Math.min(chunk.length, echo.length - matched);
    if (chunk.subarray(0, n).equals(echo.subarray(matched, matched + n))) {
      matched += n;
      return chunk.subarray(n);
    }
    log.warn({ output: chunk.subarray(0, 64).toString("latin1") }, "a spare's output did not start with the release line's echo");
    const partial = echo.subarray(0, matched);
    matched = -1;
    return Buffer.concat([partial, chunk]);
  };
}
