/**
 * The idle scenario: what the system costs with no session at all (heartbeats,
 * sweepers, queue polling, load-balancer health checks): CPU per second and
 * resident memory of each server process, over a quiet window.
 */
import { cpuMs, rssBytes, type Proc } from "./measure.ts";
import type { Target } from "./system.ts";

export interface IdleResult {
  seconds: number;
  /**
   * CPU milliseconds per second of each process (role-index: api-1, worker-2, lb-1): the median of
   * WINDOWS equal windows, so a one-off in one of them (V8's memory reducer runs a few full GCs,
   * ~80 ms of CPU, some seconds after a process goes quiet) does not count as what idling costs.
   */
  cpuMsPerSec: Record<string, number>;
  /** The same over the whole time, one-offs included. */
  meanCpuMsPerSec: Record<string, number>;
  /** The sum of the medians over every process counted (Redis apart: it is shared with whatever else runs here). */
  totalCpuMsPerSec: number;
  /** The sum of the means. */
  totalMeanCpuMsPerSec: number;
  rssMiB: Record<string, number>;
}

const WINDOWS = 3;
const round2 = (x: number) => Math.round(x * 100) / 100;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

/** Names each process by role and index, in order (api-1, api-2, worker-1, ...). */
function labels(procs: Proc[]): [string, Proc][] {
  const seen = new Map<string, number>();
  return procs.map((p) => {
    const i = (seen.get(p.role) ?? 0) + 1;
    seen.set(p.role, i);
    return [`${p.role}-${i}`, p];
  });
}

/**
 * `settleSec` first: for its first half minute a process just started still spends CPU on its
 * start (lazy compilation, the heap shrinking back, the first sweeps), which is not what a
 * cluster that has been idle costs.
 */
export async function scenarioIdle(t: Target, seconds: number, settleSec = 0): Promise<IdleResult> {
  // Redis serves others on a shared machine: its CPU is not this system's alone.
  const procs = labels(t.procs.filter((p) => p.role !== "redis"));
  await new Promise((r) => setTimeout(r, settleSec * 1000));
  const snap = () => new Map(procs.map(([k, p]) => [k, cpuMs(p.pid)]));
  const marks = [{ at: performance.now(), cpu: snap() }];
  for (let w = 0; w < WINDOWS; w++) {
    await new Promise((r) => setTimeout(r, (seconds * 1000) / WINDOWS));
    marks.push({ at: performance.now(), cpu: snap() });
  }
  const first = marks[0]!;
  const last = marks[marks.length - 1]!;
  const cpuMsPerSec: Record<string, number> = {};
  const meanCpuMsPerSec: Record<string, number> = {};
  const rssMiB: Record<string, number> = {};
  for (const [k, p] of procs) {
    const rates = marks.slice(1).map((m, i) => (m.cpu.get(k)! - marks[i]!.cpu.get(k)!) / ((m.at - marks[i]!.at) / 1000));
    cpuMsPerSec[k] = round2(median(rates));
    meanCpuMsPerSec[k] = round2((last.cpu.get(k)! - first.cpu.get(k)!) / ((last.at - first.at) / 1000));
    rssMiB[k] = Math.round((rssBytes(p.pid) / 2 ** 20) * 10) / 10;
  }
  const sum = (r: Record<string, number>) => round2(Object.values(r).reduce((a, b) => a + b, 0));
  return {
    seconds: Math.round((last.at - first.at) / 100) / 10,
    cpuMsPerSec,
    meanCpuMsPerSec,
    totalCpuMsPerSec: sum(cpuMsPerSec),
    totalMeanCpuMsPerSec: sum(meanCpuMsPerSec),
    rssMiB,
  };
}

/** The idle scenario as a table (bench/results/latest.md). */
export function idleMarkdown(r: { system?: IdleResult | { failed: string } } | undefined): string {
  if (!r?.system) return "";
  if ("failed" in r.system) return `\n## Idle\n\nfailed: ${r.system.failed}\n`;
  const s = r.system;
  return [
    "",
    `## Idle: no session, ${s.seconds} s (target: ≤ 5 ms of CPU per second for the cluster; API and worker ≤ 80 MiB each)`,
    "",
    `CPU ms/s: the median of ${WINDOWS} equal windows (a one-off such as V8's memory-reducing GCs after a process goes quiet falls in one); the mean over the whole time beside it.`,
    "",
    "| process | CPU ms/s | mean, one-offs included | RSS MiB |",
    "|---|---:|---:|---:|",
    ...Object.keys(s.cpuMsPerSec).map((k) => `| ${k} | ${s.cpuMsPerSec[k]} | ${s.meanCpuMsPerSec?.[k] ?? ""} | ${s.rssMiB[k]} |`),
    `| all (Redis apart) | ${s.totalCpuMsPerSec} | ${s.totalMeanCpuMsPerSec ?? ""} | |`,
    "",
  ].join("\n");
}
