/**
 * Turns benchmark results into target verdicts and the markdown table that
 * bench/results/latest.md and docs/benchmark.md show.
 */

export interface Verdict {
  id: string;
  what: string;
  value: number | null;
  limit: number;
  unit: string;
  /** "max": value must be <= limit; "min": value must be >= limit. */
  kind: "max" | "min";
  met: boolean;
}

export type Results = {
  version: 1;
  quick: boolean;
  startedAt: string;
  durationSec: number;
  machine: Record<string, unknown>;
  targets: { system: string; bare: string };
  settings: Record<string, unknown>;
  scenarios: Record<string, any>;
  verdicts: Verdict[];
};

const MiB = 1024 * 1024;

/** Every numeric leaf of `sys` divided by the same leaf of `bare` (where both exist and bare is not 0). */
export function ratios(sys: unknown, bare: unknown): unknown {
  if (typeof sys === "number" && typeof bare === "number") return bare === 0 ? null : Math.round((sys / bare) * 100) / 100;
  if (sys && bare && typeof sys === "object" && typeof bare === "object" && !Array.isArray(sys)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(sys as Record<string, unknown>)) {
      const r = ratios(v, (bare as Record<string, unknown>)[k]);
      if (r !== undefined && r !== null && !(typeof r === "object" && Object.keys(r as object).length === 0)) out[k] = r;
    }
    return out;
  }
  return undefined;
}

function check(id: string, what: string, value: number | null | undefined, kind: "max" | "min", limit: number, unit: string): Verdict {
  const v = value === undefined || value === null || Number.isNaN(value) ? null : value;
  return { id, what, value: v, limit, unit, kind, met: v !== null && (kind === "max" ? v <= limit : v >= limit) };
}

/** The issue's targets, checked against one run. */
export function verdicts(s: Record<string, any>): Verdict[] {
  const out: Verdict[] = [];
  const sys = (k: string) => s[k]?.system;
  const bare = (k: string) => s[k]?.bare;
  if (sys("echo")) {
    out.push(check("echo.p50", "echo p50", sys("echo").us.p50, "max", 700, "µs"));
    out.push(check("echo.p99", "echo p99", sys("echo").us.p99, "max", 5000, "µs"));
    // Issue 19: 2.5x (the earlier 2x was withdrawn: ten process hops against four).
    out.push(check("echo.p50.ratio", "echo p50 / bare p50", sys("echo").us.p50 / bare("echo").us.p50, "max", 2.5, "x"));
    out.push(check("echo.cpu.ratio", "CPU per keystroke, every server process / bare", allServerCpuPerKey(sys("echo")) / bare("echo").serverCpuUsPerKey, "max", 2.5, "x"));
  }
  if (sys("throughput")) {
    const t = sys("throughput");
    out.push(check("throughput.ratio", "throughput / bare", t.mbPerSec / bare("throughput").mbPerSec, "min", 0.85, "x"));
    out.push(check("throughput.cpu", "server CPU per MB / bare", t.serverCpuMsPerMB / bare("throughput").serverCpuMsPerMB, "max", 2, "x"));
    out.push(check("throughput.bytes", "every byte arrives (1 = yes)", t.everyByte && t.errors.length === 0 ? 1 : 0, "min", 1, ""));
    for (const role of ["api", "worker", "redis.used_memory"]) {
      const m = t.memory[role];
      if (m) out.push(check(`throughput.mem.${role}`, `${role} memory growth during ${Math.round(t.payloadBytes / 1e6)} MB`, m.growth / MiB, "max", 64, "MiB"));
    }
  }
  if (sys("open")) {
    out.push(check("open.p50", "open p50", sys("open").ms.p50, "max", 25, "ms"));
    out.push(check("open.p99", "open p99", sys("open").ms.p99, "max", 60, "ms"));
    out.push(check("open.p50.ratio", "open p50 / bare p50", sys("open").ms.p50 / bare("open").ms.p50, "max", 1.6, "x"));
  }
  if (sys("flood")) {
    const f = sys("flood");
    out.push(check("flood.ctrlc", "Ctrl-C to prompt at 1 MB/s", f.ctrlCToPromptMs, "max", 500, "ms"));
    for (const role of ["api", "worker", "redis.used_memory"]) {
      const m = f.memory[role];
      if (m) out.push(check(`flood.mem.${role}`, `${role} memory growth during the flood`, m.growth / MiB, "max", 64, "MiB"));
    }
  }
  if (sys("concurrent")) {
    const c = sys("concurrent");
    out.push(check("concurrent.open", `${c.sessions} sessions all open within`, c.opened === c.sessions ? c.allOpenMs : null, "max", 2000, "ms"));
    out.push(check("concurrent.echo", `echo p50 with ${c.active} active`, c.echoUs.p50 / 1000, "max", 8, "ms"));
    out.push(check("concurrent.mem", "server memory per session", c.serverBytesPerSession / 1024, "max", 256, "KiB"));
    const b = bare("concurrent");
    if (b) {
      out.push(check("concurrent.open.ratio", `${c.sessions} at once, last prompt / bare`, c.allOpenMs / b.allOpenMs, "max", 1.2, "x"));
      out.push(check("concurrent.p99.ratio", `echo p99 with ${c.active} of ${c.sessions} active / bare`, c.echoUs.p99 / b.echoUs.p99, "max", 2, "x"));
    }
  }
  if (sys("thousand")) {
    const k = sys("thousand");
    out.push(check("thousand.errors", `${k.sessions} sessions on one worker: errors`, k.opened === k.sessions && k.echoUs.n > 0 ? k.errorCount : null, "max", 0, ""));
    out.push(check("thousand.mem", `server memory per session (${k.sessions})`, k.serverBytesPerSession / 1024, "max", 256, "KiB"));
    if (bare("thousand")) out.push(check("thousand.echo.ratio", `${k.sessions} sessions: echo p50 / bare`, k.echoUs.p50 / bare("thousand").echoUs.p50, "max", 3, "x"));
  }
  const cli = sys("cli");
  if (cli?.cli?.us) out.push(check("cli.echo.ratio", "molecule ssh echo p50 / bench client", cli.cli.us.p50 / cli.client.us.p50, "max", 1.1, "x"));
  const idle = sys("idle");
  if (idle && !idle.failed) {
    out.push(check("idle.cpu", "idle cluster: CPU per second (API, workers, haproxy)", idle.totalCpuMsPerSec, "max", 5, "ms/s"));
    const rss = Object.entries(idle.rssMiB as Record<string, number>).filter(([k]) => !k.startsWith("lb"));
    if (rss.length) out.push(check("idle.rss", "idle API / worker process: largest RSS", Math.max(...rss.map(([, v]) => v)), "max", 80, "MiB"));
  }
  const storm = sys("storm");
  if (storm && !storm.failed) {
    out.push(check("storm.echo", `failover storm (${storm.sessions}): last session echoing again`, storm.lastEchoMs, "max", 5000, "ms"));
    out.push(check("storm.bytes", "failover storm: bytes lost or repeated", storm.bytesLost + storm.bytesRepeated, "max", 0, ""));
  }
  return out;
}

/** CPU per keystroke of every server process of the system: API, worker, Redis and haproxy (issue 19's measure). */
function allServerCpuPerKey(e: { cpuUsPerKey: Record<string, number> }): number {
  return ["api", "worker", "redis", "lb"].reduce((sum, role) => sum + (e.cpuUsPerKey[role] ?? 0), 0);
}

/** "6.0 (publish 2.0, multi 1.0, …)": the total and the commands that make up most of it. */
const calls = (c: Record<string, number>) => {
  const { total, ...by } = c;
  const top = Object.entries(by)
    .filter(([, v]) => v >= 0.05)
    .slice(0, 6)
    .map(([k, v]) => `${k} ${f(v, 2)}`);
  return `${f(total, 2)} (${top.join(", ")})`;
};
const f = (v: number | null | undefined, d = 1) => (v === null || v === undefined || Number.isNaN(v) ? "–" : v.toFixed(d));
const cell = (v: number | null | undefined, unit: string, d: number) => (v === null || v === undefined || Number.isNaN(v) ? "–" : `${v.toFixed(d)} ${unit}`.trim());
const ratio = (a: number | null | undefined, b: number | null | undefined) => (a == null || b == null || !b ? "–" : `${(a / b).toFixed(2)}x`);

export function markdown(r: Results): string {
  const s = r.scenarios;
  const rows: string[][] = [];
  const row = (name: string, sys: number | null | undefined, bare: number | null | undefined, unit: string, d = 1, target = "") =>
    rows.push([name, cell(sys, unit, d), cell(bare, unit, d), ratio(sys, bare), target]);
  const both = (k: string) => (s[k]?.system && s[k]?.bare ? [s[k].system, s[k].bare] : null);

  const open = both("open");
  if (open) {
    row("open p50 (connect → first prompt byte)", open[0].ms.p50, open[1].ms.p50, "ms", 1, "≤ 25 ms");
    row("open p90", open[0].ms.p90, open[1].ms.p90, "ms");
    row("open p99", open[0].ms.p99, open[1].ms.p99, "ms", 1, "≤ 60 ms");
  }
  const echo = both("echo");
  if (echo) {
    row("echo p50", echo[0].us.p50, echo[1].us.p50, "µs", 0, "≤ 700 µs, ≤ 2.5x bare");
    row("echo p90", echo[0].us.p90, echo[1].us.p90, "µs", 0);
    row("echo p99", echo[0].us.p99, echo[1].us.p99, "µs", 0, "≤ 5000 µs");
    row("echo max", echo[0].us.max, echo[1].us.max, "µs", 0);
    row("server CPU per keystroke, every process (API+worker+Redis+haproxy / bridge)", allServerCpuPerKey(echo[0]), echo[1].serverCpuUsPerKey, "µs", 0, "≤ 2.5x bare");
    row("server CPU per keystroke (API+worker / bridge)", echo[0].serverCpuUsPerKey, echo[1].serverCpuUsPerKey, "µs", 0);
    for (const role of ["api", "worker", "redis", "lb"]) row(`↳ CPU per keystroke: ${role === "lb" ? "haproxy" : role}`, echo[0].cpuUsPerKey[role], null, "µs", 0);
    const wk = (e: any, role: string) => e.wakeUpsPerKey?.[role];
    if (echo[0].wakeUpsPerKey) {
      const all = ["api", "worker", "redis", "lb"].reduce((n, role) => n + (wk(echo[0], role) ?? 0), 0);
      row("wake-ups per keystroke (context switches, every thread of every server process)", all, wk(echo[1], "bridge"), "", 2);
      for (const role of ["api", "worker", "redis", "lb"]) row(`↳ wake-ups per keystroke: ${role === "lb" ? "haproxy" : role}`, wk(echo[0], role), null, "", 2);
    }
    if (echo[0].redisCallsPerKey) rows.push(["Redis commands per keystroke (none waits for a reply)", calls(echo[0].redisCallsPerKey), "–", "", ""]);
    const lb = s.echo?.bareLb;
    if (lb?.us) {
      // The reference with the load balancer in front: its ratio to the bare bridge is the LB's share.
      rows.push(["echo p50: bare bridge behind the same haproxy", "–", cell(lb.us.p50, "µs", 0), ratio(lb.us.p50, echo[1].us.p50), "(reference)"]);
      rows.push(["↳ system / bare behind haproxy", "–", "–", ratio(echo[0].us.p50, lb.us.p50), ""]);
    }
  }
  const cli = s.cli?.system;
  if (cli?.cli?.us) {
    // Issue 15: the CLI in a real PTY against the in-process bench client, keystroke pairs alternating in blocks.
    rows.push(["`molecule ssh` echo p50 (in a real PTY) / bench client", cell(cli.cli.us.p50, "µs", 0), cell(cli.client.us.p50, "µs", 0), ratio(cli.cli.us.p50, cli.client.us.p50), "≤ 1.1x"]);
    rows.push(["↳ the local terminal's PTY hop alone (a node echo in the same kind of PTY)", cell(cli.ptyHop.us.p50, "µs", 0), "–", "", ""]);
    rows.push(["↳ `molecule ssh` without that hop / bench client", "–", "–", `${f(cli.ratioP50WithoutPtyHop, 2)}x`, ""]);
  }
  const tp = both("throughput");
  if (tp) {
    const n = tp[0].rounds?.length ?? 1;
    row(`throughput (${f(tp[0].payloadBytes / 1e6, 2)} MB${n > 1 ? `, median of ${n} rounds` : ""})`, tp[0].mbPerSec, tp[1].mbPerSec, "MB/s", 2, "≥ 0.85x bare");
    if (n > 1) {
      const list = (x: any, k: string, d: number) => (x.rounds ?? []).map((r: any) => f(r[k], d)).join(", ");
      rows.push(["↳ each round: MB/s", list(tp[0], "mbPerSec", 1), list(tp[1], "mbPerSec", 1), "", ""]);
      rows.push(["↳ each round: server CPU per MB (ms)", list(tp[0], "serverCpuMsPerMB", 1), list(tp[1], "serverCpuMsPerMB", 1), "", ""]);
    }
    row("server CPU per MB (API+worker+Redis / bridge)", tp[0].serverCpuMsPerMB, tp[1].serverCpuMsPerMB, "ms", 1, "≤ 2x bare");
    for (const role of ["api", "worker", "redis", "lb"]) row(`↳ CPU per MB: ${role === "lb" ? "haproxy" : role}`, tp[0].cpuMsPerMB[role], null, "ms", 1);
    if (tp[0].redisCallsPerMB) rows.push(["Redis commands per MB", calls(tp[0].redisCallsPerMB), "–", "", ""]);
    rows.push(["every byte arrived", tp[0].everyByte ? "yes" : "NO", tp[1].everyByte ? "yes" : "NO", "", "yes"]);
    const mem = (m: any, k: string) => (m[k] ? m[k].peak / 1024 / 1024 : null);
    row("peak RSS API (sum)", mem(tp[0].memory, "api"), null, "MiB");
    row("peak RSS worker (sum)", mem(tp[0].memory, "worker"), null, "MiB");
    row("peak RSS haproxy", mem(tp[0].memory, "lb"), null, "MiB");
    row("peak RSS Redis (process)", mem(tp[0].memory, "redis"), null, "MiB");
    row("peak RSS bridge", null, mem(tp[1].memory, "bridge"), "MiB");
  }
  const fl = both("flood");
  if (fl) {
    row("flood: Ctrl-C → `__BACK__` at 1 MB/s", fl[0].ctrlCToPromptMs, fl[1].ctrlCToPromptMs, "ms", 0, "≤ 500 ms");
    row("flood: backlog at Ctrl-C", fl[0].backlogAtCtrlC / 1024, fl[1].backlogAtCtrlC / 1024, "KiB", 0);
    const g = (m: any, k: string) => (m[k] ? m[k].growth / 1024 / 1024 : null);
    row("flood: API RSS growth", g(fl[0].memory, "api"), null, "MiB", 1, "≤ 64 MiB");
    row("flood: worker RSS growth", g(fl[0].memory, "worker"), null, "MiB", 1, "≤ 64 MiB");
    row("flood: Redis used_memory growth", g(fl[0].memory, "redis.used_memory"), null, "MiB", 1, "≤ 64 MiB");
    row("flood: bridge RSS growth", null, g(fl[1].memory, "bridge"), "MiB");
  }
  const cc = both("concurrent");
  if (cc) {
    row(`concurrent: ${cc[0].sessions} opened at once, last prompt after`, cc[0].allOpenMs, cc[1].allOpenMs, "ms", 0, "≤ 2000 ms");
    row("concurrent: open p50", cc[0].openMs.p50, cc[1].openMs.p50, "ms");
    row("concurrent: open p99", cc[0].openMs.p99, cc[1].openMs.p99, "ms");
    if (cc[0].cpuMsPerOpen) {
      const per = (x: any) => Object.values(x.cpuMsPerOpen ?? {}).reduce((a: number, v) => a + (v as number), 0);
      row("concurrent: server CPU per open (every process counted; shells and PostgreSQL apart)", per(cc[0]), per(cc[1]), "ms", 2);
      for (const role of ["api", "worker", "redis", "lb"]) row(`↳ CPU per open: ${role === "lb" ? "haproxy" : role}`, cc[0].cpuMsPerOpen[role], null, "ms", 2);
    }
    row(`concurrent: echo p50 (${cc[0].active} active)`, cc[0].echoUs.p50 / 1000, cc[1].echoUs.p50 / 1000, "ms", 2, "≤ 8 ms");
    row(`concurrent: echo p99 (${cc[0].active} active)`, cc[0].echoUs.p99 / 1000, cc[1].echoUs.p99 / 1000, "ms", 2);
    row("concurrent: server memory per session", cc[0].serverBytesPerSession / 1024, cc[1].serverBytesPerSession / 1024, "KiB", 0, "≤ 256 KiB");
  }
  const th = both("thousand");
  if (th) {
    row(`${th[0].sessions} sessions on one worker: opened`, th[0].opened, th[1].opened, "", 0, `${th[0].sessions}`);
    row(`${th[0].sessions} sessions: errors`, th[0].errorCount, th[1].errorCount, "", 0, "0");
    row(`${th[0].sessions} sessions: open p50`, th[0].openMs.p50, th[1].openMs.p50, "ms");
    row(`${th[0].sessions} sessions: echo p50`, th[0].echoUs.p50 / 1000, th[1].echoUs.p50 / 1000, "ms", 2);
    row(`${th[0].sessions} sessions: server memory per session`, th[0].serverBytesPerSession / 1024, th[1].serverBytesPerSession / 1024, "KiB", 0, "≤ 256 KiB");
  }

  const m = r.machine as Record<string, any>;
  const lines = [
    `# Benchmark results${r.quick ? " (quick run: not comparable)" : ""}`,
    "",
    `Run ${r.startedAt}, ${r.durationSec.toFixed(0)} s. Machine: ${m.cpu} × ${m.cores} cores, ${m.memGiB} GiB RAM, Linux ${m.kernel}, Node ${m.node}, Redis ${m.redis}, ${m.haproxy}; load average ${m.loadStart} at start, ${m.loadBeforeThousand || m.loadEnd} before the 1000-session part${m.note ? `; ${m.note}` : ""}.`,
    "",
    `- system: ${r.targets.system}`,
    `- bare: ${r.targets.bare}`,
    "",
    "| figure | system | bare bridge | ratio | target |",
    "|---|---:|---:|---:|---|",
    ...rows.map((c) => `| ${c.join(" | ")} |`),
    "",
    "| target | value | limit | met |",
    "|---|---:|---:|:-:|",
    ...r.verdicts.map((v) => `| ${v.what} | ${f(v.value, 2)} ${v.unit} | ${v.kind === "max" ? "≤" : "≥"} ${v.limit} ${v.unit} | ${v.met ? "yes" : "**no**"} |`),
    "",
  ];
  return lines.join("\n");
}
