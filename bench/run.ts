/**
 * The terminal benchmark: `pnpm bench` (see docs/benchmark.md).
 *
 * Starts the bare bridge (bench/bare-bridge.ts) and the system under test (the
 * multi-node cluster from scripts/cluster.ts: haproxy, 2 API processes, 2
 * terminal-workers, on the local Redis and PostgreSQL, in a Redis key prefix and
 * database of the benchmark's own), runs every scenario against both in the same
 * run, and writes bench/results/latest.json and latest.md.
 *
 *   --quick            tiny counts (the smoke test; figures not comparable)
 *   --only a,b         scenarios: idle, open, echo, cli (molecule ssh echo vs the bench client), throughput, flood, concurrent,
 *                      storm (an API node holding many sessions killed; bench/failover-storm.ts), thousand
 *   --out DIR          where latest.json / latest.md go (default bench/results)
 *   --system KIND      cluster (default) or node (one API + one worker, no load balancer)
 *   --redis cluster    the system runs on a Redis Cluster of its own (6 local redis-server
 *                      processes: 3 primaries, 3 replicas; test/cluster-redis/harness.ts) instead of REDIS_URL
 *   --note TEXT        added to the machine line of the report
 *   --bytes N          bytes the throughput scenario produces (default 64000000):
 *                      a larger N shows whether server memory depends on output size
 *   --recording off    the system records nothing (MOLECULE_RECORDING_STORE=off); by default it
 *                      records (fs store), and the `recording` scenario compares throughput and
 *                      server CPU per MB with the org's recording on and off, rounds alternating
 */
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { createDb, createRedis, deleteKeysMatching, namespacePatterns, redisTarget } from "@molecule/shared";
import { startRedisCluster } from "../test/cluster-redis/harness.ts";
import { ROOT } from "../scripts/processes.ts";
import { redisInfo, waitForQuiet } from "./measure.ts";
import { markdown, ratios, verdicts, type Results } from "./report.ts";
import { combineThroughput, scenarioConcurrent, scenarioEchoInterleaved, scenarioFlood, scenarioOpen, scenarioThroughput } from "./scenarios.ts";
import { startBare, startBareBehindLb, startSystem, type Target } from "./system.ts";
import { scenarioCliEcho } from "./cli-echo.ts";
import { idleMarkdown, scenarioIdle } from "./idle.ts";
import { scenarioStorm, stormMarkdown } from "./failover-storm.ts";

const ALL = ["idle", "open", "echo", "cli", "throughput", "recording", "flood", "concurrent", "storm", "thousand"] as const;
type Scenario = (typeof ALL)[number];

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    out: { type: "string" },
    system: { type: "string", default: "cluster" },
    note: { type: "string" },
    bytes: { type: "string" },
    redis: { type: "string", default: "single" },
    recording: { type: "string", default: "on" },
  },
});
if (args.recording !== "on" && args.recording !== "off") throw new Error(`--recording must be on or off, got ${args.recording}`);
if (args.redis !== "single" && args.redis !== "cluster") throw new Error(`--redis must be single or cluster, got ${args.redis}`);
const quick = args.quick!;
const only = new Set((args.only ?? ALL.join(",")).split(",").map((s) => s.trim()) as Scenario[]);
for (const s of only) if (!ALL.includes(s)) throw new Error(`unknown scenario ${s}; known: ${ALL.join(", ")}`);
const kind = args.system === "node" ? "node" : "cluster";
const outDir = args.out ?? join(ROOT, "bench/results");
const bytesArg = args.bytes === undefined ? undefined : Number(args.bytes);
if (bytesArg !== undefined && !(Number.isInteger(bytesArg) && bytesArg > 0)) throw new Error(`--bytes must be a positive integer, got ${args.bytes}`);

const settings = quick
  ? { opens: 3, echo: { pairs: 20, blocks: 2, warmup: 5 }, throughputBytes: 1_000_000, throughputRounds: 1, floodMs: 500, floodRate: 1_000_000, concurrent: { sessions: 6, active: 2, pairs: 5 }, storm: { sessions: 10, ticks: 12 }, thousand: { sessions: 12, openConcurrency: 4, active: 12, pairs: 1, echoConcurrency: 6 } }
  : { opens: 100, echo: { pairs: 1000, blocks: 10, warmup: 200 }, throughputBytes: 64_000_000, throughputRounds: 3, floodMs: 2000, floodRate: 1_000_000, concurrent: { sessions: 200, active: 20, pairs: 50 }, storm: { sessions: 500, ticks: 40 }, thousand: { sessions: 1000, openConcurrency: 100, active: 1000, pairs: 1, echoConcurrency: 100 } };

/**
 * Waits (up to 15 s) for the machine to go quiet before each measurement; a quick run's figures are
 * not comparable anyway, and on a busy machine (the test suite beside it) fourteen such waits were
 * 210 s of its 240 s bound.
 */
const settle = () => (quick ? Promise.resolve(0) : waitForQuiet());

const log = (m: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${m}\n`);

// ---- the benchmark's own Redis prefix and database -----------------------------------------

const ns = process.env.BENCH_REDIS_PREFIX ?? `bench-${randomBytes(4).toString("hex")}`;
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const dbUrl = new URL(process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/molecule");
if (!process.env.BENCH_DATABASE_URL) dbUrl.pathname = "/molecule_bench";
const databaseUrl = process.env.BENCH_DATABASE_URL ?? dbUrl.toString();
const workDir = mkdtempSync(join(os.tmpdir(), `molecule-${ns}-`));
// Traversable (not listable) so the sandbox uids reach the sandboxes under it.
chmodSync(workDir, 0o711);
const logDir = join(workDir, "logs");
mkdirSync(logDir, { recursive: true });

/**
 * Every scenario's shells share one workspace (200 at once, 1000 in the last part): its per-workspace
 * sandbox limits are raised to hold them (3 processes, ~4 MiB each), for the bare bridge and the
 * system alike. The limits still apply (cgroups, rlimits): only their values differ.
 */
const BENCH_SANDBOX_LIMITS = { MOLECULE_SANDBOX_PIDS: "8192", MOLECULE_SANDBOX_MEMORY: "32g" };

function openFilesLimit(): number {
  const m = /Max open files\s+(\d+|unlimited)/.exec(readFileSync("/proc/self/limits", "utf8"));
  return !m || m[1] === "unlimited" ? Infinity : Number(m[1]);
}

// --redis cluster: a cluster of the benchmark's own; every server process gets REDIS_CLUSTER_NODES.
const redisCluster = args.redis === "cluster" ? await startRedisCluster() : null;
const clusterEnv: Record<string, string> = redisCluster ? { REDIS_CLUSTER_NODES: redisCluster.seeds } : {};
const redis = redisCluster
  ? createRedis(redisTarget({ REDIS_URL: redisUrl, REDIS_CLUSTER_NODES: redisCluster.seeds }), { maxRetriesPerRequest: 2 })
  : new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
await (redisCluster ? Promise.resolve() : redis.connect()).catch((err) => {
  process.stderr.write(`Redis is not reachable at ${redisUrl} (${(err as Error).message}). Start it: redis-server --daemonize yes --bind 127.0.0.1\n`);
  process.exit(2);
});
const rInfo = redisCluster
  ? { ...(await redisInfo(redis)), pid: redisCluster.nodes.map((n) => n.proc!.pid!) }
  : await redisInfo(redis);

function baseEnv(prefix: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...BENCH_SANDBOX_LIMITS,
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    MOLECULE_REDIS_PREFIX: prefix,
    ...clusterEnv,
    MOLECULE_SANDBOX_ROOT: join(workDir, "sandboxes"),
    MOLECULE_RECORDING_DIR: join(workDir, "recordings"),
    ...(args.recording === "off" ? { MOLECULE_RECORDING_STORE: "off" } : {}),
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "warn",
    // Profiling (docs/benchmark.md): every server process writes a .cpuprofile there when it exits;
    // BENCH_NODE_OPTIONS (e.g. --perf-basic-prof, for JavaScript names in `perf report`) go to every server process.
    ...(process.env.BENCH_CPU_PROF || process.env.BENCH_NODE_OPTIONS
      ? {
          NODE_OPTIONS: [process.env.BENCH_CPU_PROF ? `--import ${join(ROOT, "bench/cpu-profile.mjs")}` : "", process.env.BENCH_NODE_OPTIONS ?? ""].join(" ").trim(),
          ...(process.env.BENCH_CPU_PROF ? { BENCH_CPU_PROF: process.env.BENCH_CPU_PROF } : {}),
        }
      : {}),
    ...extra,
  };
}

const cleanRedis = (prefix: string) => deleteKeysMatching(redis, namespacePatterns(prefix));

/** The orgs this run made (scripts/cluster.ts: `cluster-<prefix>`; --system node: `bench-<prefix>-…`), with their rows. */
async function dropBenchOrgs(): Promise<void> {
  const h = createDb(databaseUrl, { max: 1 });
  try {
    await h.sql`DELETE FROM orgs WHERE name = ${`cluster-${ns}`} OR name = ${`cluster-${ns}-k`} OR name = ${`cluster-${ns}-s`} OR name LIKE ${`bench-${ns}-%`}`;
  } finally {
    await h.close();
  }
}

const load = () => os.loadavg().map((v) => v.toFixed(2)).join(" ");
const haproxyVersion = (() => {
  const r = spawnSync("haproxy", ["-v"], { encoding: "utf8" });
  return r.status === 0 ? (/HAProxy version (\S+)/.exec(r.stdout)?.[1] ? `haproxy ${/HAProxy version (\S+)/.exec(r.stdout)![1]}` : "haproxy") : "no haproxy";
})();
const machine = {
  cpu: os.cpus()[0]?.model ?? "unknown",
  cores: os.cpus().length,
  memGiB: Math.round(os.totalmem() / 2 ** 30),
  kernel: os.release(),
  node: process.version,
  redis: rInfo.version,
  haproxy: haproxyVersion,
  loadStart: load(),
  loadBeforeThousand: "",
  loadEnd: "",
  openFilesLimit: openFilesLimit(),
  note: args.note ?? "",
};

const started = Date.now();
const scenarios: Record<string, { system?: unknown; bare?: unknown; ratio?: unknown }> = {};
let systemDescribe = "";
let bareDescribe = "";

async function both(name: Scenario, bare: Target, system: Target, fn: (t: Target) => Promise<unknown>): Promise<void> {
  if (!only.has(name)) return;
  const entry: { system?: unknown; bare?: unknown; ratio?: unknown } = {};
  for (const t of [bare, system]) {
    const waited = await settle();
    if (waited > 1000) log(`waited ${(waited / 1000).toFixed(1)} s for the machine to be quiet`);
    const t0 = performance.now();
    log(`${name}: ${t.name}…`);
    try {
      entry[t.name] = await fn(t);
    } catch (err) {
      entry[t.name] = { failed: (err as Error).message };
    }
    log(`${name}: ${t.name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  entry.ratio = ratios(entry.system, entry.bare);
  scenarios[name] = entry;
}

let bare: Target | null = null;
let system: Target | null = null;
const cleanup = async () => {
  await Promise.allSettled([bare?.stop(), system?.stop()]);
  bare = system = null;
};
process.on("SIGINT", () => void cleanup().finally(() => process.exit(130)));

try {
  log(`prefix ${ns}, database ${new URL(databaseUrl).pathname.slice(1)}, system: ${kind}, logs in ${logDir}`);
  // Both at once; whichever started is stopped again if the other fails (cleanup below).
  const [bs, ss] = await Promise.allSettled([
    startBare(baseEnv(`${ns}-bare`), logDir),
    startSystem({ env: baseEnv(ns), kind, redisPid: rInfo.pid, logDir }),
  ]);
  if (bs.status === "fulfilled") bare = bs.value;
  if (ss.status === "fulfilled") system = ss.value;
  if (bs.status === "rejected") throw bs.reason;
  if (ss.status === "rejected") throw ss.reason;
  const b = bs.value;
  const s = ss.value;
  systemDescribe = s.describe;
  bareDescribe = b.describe;

  if (only.has("idle")) {
    // First, before any session: heartbeats, sweepers, queue polling and health checks only.
    await settle();
    log("idle: system…");
    scenarios.idle = { system: await scenarioIdle(s, quick ? 3 : 30, quick ? 0 : 30) };
    log(`idle: ${JSON.stringify(scenarios.idle.system)}`);
  }
  await both("open", b, s, (t) => scenarioOpen(t, settings.opens));
  if (only.has("echo")) {
    // Bare, bare behind haproxy and the system in alternating blocks (scenarioEchoInterleaved).
    log("echo: bare, bare behind haproxy and system, interleaved…");
    const t0 = performance.now();
    const lb = await startBareBehindLb(b, logDir).catch((err: Error) => (log(`no haproxy in front of the bare bridge: ${err.message}`), null));
    try {
      const targets = lb ? [b, lb, s] : [b, s];
      const res = await scenarioEchoInterleaved(targets, settings.echo, redis);
      const [bareRes, sysRes] = [res[0], res[res.length - 1]];
      scenarios.echo = { bare: bareRes, system: sysRes, ...(lb ? { bareLb: res[1] } : {}), ratio: ratios(sysRes, bareRes) };
    } finally {
      await lb?.stop();
    }
    log(`echo done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  if (only.has("cli")) {
    log("cli: molecule ssh echo vs the bench client on the system, interleaved…");
    scenarios.cli = { system: await scenarioCliEcho(s, settings.echo).catch((err: Error) => ({ failed: err.message })) };
    log(`cli: ${JSON.stringify(scenarios.cli.system)}`);
  }
  // Before throughput and flood: memory per session is RSS growth, and a GC returning the tens of
  // MB of garbage those leave behind during this measurement made it negative.
  await both("concurrent", b, s, (t) => scenarioConcurrent(t, redis, t.name === "system" ? ns : null, settings.concurrent));
  if (only.has("throughput")) {
    // Rounds alternate between the targets (bare, system, bare, ...), like echo's blocks.
    const per: Record<"bare" | "system", Awaited<ReturnType<typeof scenarioThroughput>>[]> = { bare: [], system: [] };
    const failed: Partial<Record<"bare" | "system", string>> = {};
    for (let i = 0; i < settings.throughputRounds; i++) {
      for (const t of [b, s]) {
        if (failed[t.name]) continue;
        await settle();
        log(`throughput round ${i + 1}/${settings.throughputRounds}: ${t.name}…`);
        try {
          per[t.name].push(await scenarioThroughput(t, redis, bytesArg ?? settings.throughputBytes));
        } catch (err) {
          failed[t.name] = (err as Error).message;
        }
      }
    }
    const result = (n: "bare" | "system") => (failed[n] ? { failed: failed[n] } : combineThroughput(per[n]));
    scenarios.throughput = { bare: result("bare"), system: result("system"), ratio: ratios(result("system"), result("bare")) };
  }
  if (only.has("recording")) {
    // The same system, the same processes: only the org's setting changes between rounds (on, off, on, ...).
    const per: Record<"on" | "off", Awaited<ReturnType<typeof scenarioThroughput>>[]> = { on: [], off: [] };
    let failed: string | null = null;
    for (let i = 0; i < settings.throughputRounds && !failed; i++) {
      for (const mode of ["on", "off"] as const) {
        await setRecording(s, mode === "on");
        await settle();
        log(`recording round ${i + 1}/${settings.throughputRounds}: ${mode}…`);
        try {
          per[mode].push(await scenarioThroughput(s, redis, bytesArg ?? settings.throughputBytes));
        } catch (err) {
          failed = (err as Error).message;
          break;
        }
      }
    }
    await setRecording(s, true).catch((err: Error) => log(`could not turn recording back on: ${err.message}`));
    if (failed) scenarios.recording = { system: { failed } };
    else {
      const on = combineThroughput(per.on);
      const off = combineThroughput(per.off);
      scenarios.recording = {
        system: { on, off, recorderOff: args.recording === "off" },
        ratio: { mbPerSec: round2(on.mbPerSec / off.mbPerSec), serverCpuMsPerMB: round2(on.serverCpuMsPerMB / off.serverCpuMsPerMB) },
      };
    }
  }
  await both("flood", b, s, (t) => scenarioFlood(t, redis, { floodMs: settings.floodMs, rate: settings.floodRate }));
  await s.stop();
  system = null;
  if (only.has("storm")) {
    // A cluster of its own (2 API nodes, 2 workers): one API node is killed under its sessions.
    await settle();
    log(`storm: ${settings.storm.sessions} sessions on one API node, then SIGKILL…`);
    const prefix = `${ns}-s`;
    scenarios.storm = {
      system: await scenarioStorm(baseEnv(prefix), logDir, settings.storm).catch((err: Error) => ({ failed: err.stack ?? err.message })),
    };
    await cleanRedis(prefix).catch(() => {});
    log(`storm: ${JSON.stringify(scenarios.storm.system)}`);
  }
  // The 1000 shells of the last part drive the load average up by themselves.
  machine.loadBeforeThousand = load();

  if (only.has("thousand")) {
    const n = settings.thousand.sessions;
    // Each session holds a PTY, a WebSocket on the client, haproxy (two) and the API: 4+ descriptors.
    if (openFilesLimit() < n * 6 + 1000) {
      scenarios.thousand = { system: { failed: `ulimit -n is ${openFilesLimit()}: raise it to at least ${n * 6 + 1000}` } };
    } else {
      // One worker holds every session: its capacity and the claim deadline are raised for the run.
      const prefix = `${ns}-k`;
      system = await startSystem({
        env: baseEnv(prefix, { MOLECULE_WORKER_CAPACITY: String(n + 100), MOLECULE_CLAIM_TIMEOUT_MS: "60000" }),
        kind,
        workers: 1,
        redisPid: rInfo.pid,
        logDir,
      });
      const s1 = system;
      await both("thousand", b, s1, (t) => scenarioConcurrent(t, redis, t.name === "system" ? prefix : null, settings.thousand));
      await cleanRedis(prefix).catch(() => {});
    }
  }
} catch (err) {
  log(`benchmark failed: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 1;
} finally {
  await cleanup();
  await cleanRedis(ns).catch(() => {});
  await cleanRedis(`${ns}-k`).catch(() => {});
  await cleanRedis(`${ns}-s`).catch(() => {});
  await dropBenchOrgs().catch((err: Error) => log(`could not delete the benchmark's orgs: ${err.message}`));
  redis.disconnect();
  await redisCluster?.close();
}

machine.loadEnd = load();
const results: Results = {
  version: 1,
  quick,
  startedAt: new Date(started).toISOString(),
  durationSec: (Date.now() - started) / 1000,
  machine,
  targets: { system: systemDescribe, bare: bareDescribe },
  settings,
  scenarios,
  verdicts: verdicts(scenarios),
};
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, "latest.json"), `${JSON.stringify(results, null, 2)}\n`);
const md = markdown(results) + recordingMarkdown() + idleMarkdown(scenarios.idle as never) + stormMarkdown(scenarios.storm as never);
writeFileSync(join(outDir, "latest.md"), md);
process.stdout.write(md);
log(`wrote ${join(outDir, "latest.json")} and latest.md (${results.durationSec.toFixed(0)} s)`);
if (existsSync(workDir) && process.exitCode !== 1 && !process.env.BENCH_KEEP) rmSync(workDir, { recursive: true, force: true });
process.exit(process.exitCode ?? 0);

/** The org's recording setting, through the API as a user would change it. */
async function setRecording(t: Target, enabled: boolean): Promise<void> {
  const base = t.terminalUrl.replace(/^ws/, "http").replace(/\/workspaces\/.*$/, "");
  const res = await fetch(`${base}/orgs/current/recording`, {
    method: "PATCH",
    headers: { authorization: `Bearer ${t.token}`, "content-type": "application/json" },
    body: JSON.stringify({ enabled }),
  });
  if (res.status !== 200) throw new Error(`PATCH /orgs/current/recording: ${res.status} ${await res.text()}`);
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

/** The recording scenario as a table (on vs off in the same run). */
function recordingMarkdown(): string {
  const r = scenarios.recording as { system?: { on?: { mbPerSec: number; serverCpuMsPerMB: number; everyByte: boolean }; off?: { mbPerSec: number; serverCpuMsPerMB: number; everyByte: boolean }; failed?: string }; ratio?: { mbPerSec: number; serverCpuMsPerMB: number } } | undefined;
  if (!r?.system) return "";
  if (r.system.failed || !r.system.on || !r.system.off) return `\n## Recording on vs off\n\nfailed: ${r.system.failed ?? "no result"}\n`;
  const { on, off } = r.system;
  return [
    "",
    "## Recording on vs off (same system, same run, rounds alternating)",
    "",
    "| recording | MB/s | server CPU ms per MB | every byte |",
    "|---|---:|---:|:-:|",
    `| on | ${on.mbPerSec} | ${on.serverCpuMsPerMB} | ${on.everyByte ? "yes" : "NO"} |`,
    `| off | ${off.mbPerSec} | ${off.serverCpuMsPerMB} | ${off.everyByte ? "yes" : "NO"} |`,
    `| on / off | ${r.ratio?.mbPerSec} | ${r.ratio?.serverCpuMsPerMB} | |`,
    "",
  ].join("\n");
}
