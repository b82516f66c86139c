/**
 * The idle scenario: what the system costs with no session at all (heartbeats,
 * sweepers, queue polling, load-balancer health checks): CPU per second and
 * resident memory of each server process, over a quiet window.
 */
import { cpuMs, rssBytes, type Proc } from "./measure.ts";
import type { Target } from "./system.ts";

export interface IdleResult {
  seconds: number;
  /** CPU milliseconds per second of each process (role-index: api-1, worker-2, lb-1). */
  cpuMsPerSec: Record<string, number>;
  /** The sum over every process counted (Redis apart: it is shared with whatever else runs here). */
  totalCpuMsPerSec: number;
  rssMiB: Record<string, number>;
}

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
  const before = new Map(procs.map(([k, p]) => [k, cpuMs(p.pid)]));
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const dt = (performance.now() - t0) / 1000;
  const cpuMsPerSec: Record<string, number> = {};
  const rssMiB: Record<string, number> = {};
  for (const [k, p] of procs) {
    cpuMsPerSec[k] = Math.round(((cpuMs(p.pid) - before.get(k)!) / dt) * 100) / 100;
    rssMiB[k] = Math.round((rssBytes(p.pid) / 2 ** 20) * 10) / 10;
  }
  const total = Object.values(cpuMsPerSec).reduce((a, b) => a + b, 0);
  return { seconds: Math.round(dt * 10) / 10, cpuMsPerSec, totalCpuMsPerSec: Math.round(total * 100) / 100, rssMiB };
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
    "| process | CPU ms/s | RSS MiB |",
    "|---|---:|---:|",
    ...Object.keys(s.cpuMsPerSec).map((k) => `| ${k} | ${s.cpuMsPerSec[k]} | ${s.rssMiB[k]} |`),
    `| all (Redis apart) | ${s.totalCpuMsPerSec} | |`,
    "",
  ].join("\n");
}
