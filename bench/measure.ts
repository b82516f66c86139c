/**
 * What the benchmark reads about processes: CPU time (all live threads, from
 * /proc/<pid>/task/<tid>/schedstat, nanoseconds), resident memory
 * (/proc/<pid>/status), Redis memory (INFO), and percentiles.
 */
import { readdirSync, readFileSync } from "node:fs";
import type { Cluster, Redis } from "ioredis";
import { isCluster } from "@molecule/shared";

/** `INFO <section>` of each primary of a cluster (`--redis cluster`), or of the one Redis. */
async function infoEach(redis: Redis, section: string): Promise<string[]> {
  if (!isCluster(redis)) return [await redis.info(section)];
  return Promise.all((redis as unknown as Cluster).nodes("master").map((n) => n.info(section)));
}

export interface Proc {
  role: string;
  pid: number;
}

/** Sums `read(file)` over the live threads of `pid` (0 when the process is gone; a thread that ends meanwhile counts 0). */
function sumOverThreads(pid: number, file: string, read: (text: string) => number): number {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0;
  }
  let sum = 0;
  for (const t of tasks) {
    try {
      sum += read(readFileSync(`/proc/${pid}/task/${t}/${file}`, "latin1"));
    } catch {
      // thread ended meanwhile
    }
  }
  return sum;
}

/** CPU time a process has used so far, in milliseconds (every thread, user + system). */
export function cpuMs(pid: number): number {
  const ns = sumOverThreads(pid, "schedstat", (text) => Number(text.split(" ")[0]));
  if (ns > 0) return ns / 1e6;
  // No schedstat (kernel without CONFIG_SCHEDSTATS): clock ticks from stat, 10 ms resolution.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return 0;
  }
}

/**
 * Context switches of a process so far, every live thread (voluntary + involuntary, from
 * /proc/<pid>/task/<tid>/status): each is a thread put to sleep and woken again, the unit of
 * cost on the byte path (docs/benchmark.md).
 */
export function contextSwitches(pid: number): number {
  const field = (text: string, name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(text)?.[1] ?? 0);
  return sumOverThreads(pid, "status", (text) => field(text, "voluntary_ctxt_switches") + field(text, "nonvoluntary_ctxt_switches"));
}

/** Context switches per role since `before` (roles with several processes are summed). */
export function switchesSince(procs: Proc[], before: Map<number, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of procs) out[p.role] = (out[p.role] ?? 0) + (contextSwitches(p.pid) - (before.get(p.pid) ?? 0));
  return out;
}

/** Resident set size in bytes (0 when the process is gone). */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "latin1"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export async function redisInfo(redis: Redis): Promise<{ pid: number; usedMemory: number; version: string }> {
  const info = await redis.info();
  const get = (k: string) => new RegExp(`^${k}:(.*)$`, "m").exec(info)?.[1]?.trim() ?? "";
  return { pid: Number(get("process_id")), usedMemory: Number(get("used_memory")), version: get("redis_version") };
}

/** used_memory (summed over the primaries of a cluster). */
export async function redisUsedMemory(redis: Redis): Promise<number> {
  let sum = 0;
  for (const info of await infoEach(redis, "memory")) sum += Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? 0);
  return sum;
}

export function cpuSnapshot(procs: Proc[]): Map<number, number> {
  return new Map(procs.map((p) => [p.pid, cpuMs(p.pid)]));
}

/** CPU milliseconds per role since `before` (roles with several processes are summed). */
export function cpuSince(procs: Proc[], before: Map<number, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of procs) out[p.role] = (out[p.role] ?? 0) + (cpuMs(p.pid) - (before.get(p.pid) ?? 0));
  return out;
}

export function rssByRole(procs: Proc[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of procs) out[p.role] = (out[p.role] ?? 0) + rssBytes(p.pid);
  return out;
}

/**
 * Samples resident memory of every process (and Redis' used_memory) every
 * `everyMs` until stopped; reports baseline and peak per role.
 */
export function memorySampler(procs: Proc[], redis: Redis | null, everyMs = 50) {
  const base = rssByRole(procs);
  const peak: Record<string, number> = { ...base };
  let redisBase = 0;
  let redisPeak = 0;
  let inflight = false;
  const readRedis = async () => {
    if (!redis || inflight) return;
    inflight = true;
    try {
      const m = await redisUsedMemory(redis);
      if (!redisBase) redisBase = m;
      redisPeak = Math.max(redisPeak, m);
    } catch {
      // Redis busy or gone: skip this sample
    } finally {
      inflight = false;
    }
  };
  const sample = () => {
    const now = rssByRole(procs);
    for (const [k, v] of Object.entries(now)) peak[k] = Math.max(peak[k] ?? 0, v);
    void readRedis();
  };
  const first = readRedis();
  const timer = setInterval(sample, everyMs);
  return {
    async stop() {
      clearInterval(timer);
      await first;
      sample();
      await readRedis();
      const rolePeak: Record<string, { base: number; peak: number; growth: number }> = {};
      for (const k of Object.keys(peak)) rolePeak[k] = { base: base[k] ?? 0, peak: peak[k]!, growth: peak[k]! - (base[k] ?? 0) };
      if (redis) rolePeak["redis.used_memory"] = { base: redisBase, peak: redisPeak, growth: redisPeak - redisBase };
      return rolePeak;
    },
  };
}

export function percentiles(values: number[]): { n: number; p50: number; p90: number; p99: number; max: number; mean: number } {
  if (values.length === 0) return { n: 0, p50: NaN, p90: NaN, p99: NaN, max: NaN, mean: NaN };
  const s = [...values].sort((a, b) => a - b);
  // Nearest-rank percentile.
  const at = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
  return { n: s.length, p50: at(50), p90: at(90), p99: at(99), max: s[s.length - 1]!, mean: s.reduce((a, b) => a + b, 0) / s.length };
}

/** Busy and total jiffies of the whole machine (first line of /proc/stat). */
function machineTicks(): { busy: number; total: number } {
  const f = readFileSync("/proc/stat", "latin1").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  // idle + iowait are not busy.
  return { busy: total - (f[3] ?? 0) - (f[4] ?? 0), total };
}

/**
 * Waits until the machine is quiet — under `busyFraction` of its CPU busy for two 250 ms windows
 * in a row — or `maxMs` passed; returns how long it waited. What a scenario leaves behind (shells
 * exiting, audit rows written, a GC) must not be measured as the next one's cost.
 */
export async function waitForQuiet(busyFraction = 0.15, maxMs = 15_000): Promise<number> {
  const t0 = performance.now();
  let calm = 0;
  let prev = machineTicks();
  while (calm < 2 && performance.now() - t0 < maxMs) {
    await new Promise((r) => setTimeout(r, 250));
    const now = machineTicks();
    const dt = now.total - prev.total;
    calm = dt > 0 && (now.busy - prev.busy) / dt < busyFraction ? calm + 1 : 0;
    prev = now;
  }
  return performance.now() - t0;
}

/** Calls per command so far (INFO commandstats, summed over the primaries of a cluster), lower-case names. */
export async function redisCommandCalls(redis: Redis): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const info of await infoEach(redis, "commandstats")) {
    for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out[m[1]!] = (out[m[1]!] ?? 0) + Number(m[2]);
  }
  return out;
}

/** Commands Redis ran between two `redisCommandCalls` snapshots, per command (zeros left out). */
export function commandsSince(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before[k] ?? 0);
    if (d > 0) out[k] = d;
  }
  return out;
}
