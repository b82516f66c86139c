/**
 * The Redis layer alone, one Redis against a Redis Cluster (docs/deployment.md, "Redis Cluster"):
 * `node --import tsx bench/redis-cluster.ts [--sessions 200] [--seconds 5] [--out FILE]`.
 *
 * 1. One append's cost: the single-node writer (CLIENT REPLY OFF) against the cluster writer
 *    (replies on, to follow MOVED/ASK): CPU of this process and of Redis per append, for a
 *    keystroke's echo (64 B) and a bulk chunk (16 KiB).
 * 2. Redis commands per keystroke and per MB on each primary: a keystroke is the input publish
 *    plus the echo's append; only the session's shard may see them.
 * 3. Many sessions with steady output (default 200, each with a live subscriber): aggregate MB/s
 *    and Redis CPU per MB and per shard on 1 Redis against 3 primaries.
 *
 * Both Redis setups are this script's own processes (a plain redis-server and a 6-node cluster on
 * free loopback ports), so other users of the machine's Redis do not count.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import {
  appendChunk,
  createHub,
  createLogger,
  createRedis,
  createWriterFor,
  encodeData,
  keySlot,
  redisTarget,
  sessionKeys,
  type RedisTarget,
  type RedisWriter,
} from "@molecule/shared";
import { startRedisCluster } from "../test/cluster-redis/harness.ts";
import { freePort } from "../scripts/cluster.ts";

const { values: args } = parseArgs({ options: { sessions: { type: "string", default: "200" }, seconds: { type: "string", default: "5" }, out: { type: "string" } } });
const SESSIONS = Number(args.sessions);
const SECONDS = Number(args.seconds);
const log = createLogger("bench", "warn");
const say = (m: string) => process.stderr.write(`[redis-bench] ${m}\n`);


/** CPU microseconds of a process (utime + stime from /proc, clock ticks of 10 ms). */
function cpuUs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12])) * 10_000;
}
const selfCpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

interface Setup {
  name: string;
  target: RedisTarget;
  /** Primaries: port and pid. */
  primaries: { port: number; pid: number }[];
  /** Every redis-server process (replicas replicate: they cost CPU too). */
  pids: number[];
  close(): Promise<void>;
}

async function single(): Promise<Setup> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "molecule-rbench-"));
  const p = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir], { stdio: "ignore" });
  for (let i = 0; i < 100; i++) {
    const ok = await new Redis({ port, lazyConnect: true, retryStrategy: () => null }).connect().then(() => true, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    name: "1 Redis",
    target: { url: `redis://127.0.0.1:${port}`, cluster: null },
    primaries: [{ port, pid: p.pid! }],
    pids: [p.pid!],
    async close() {
      p.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function cluster(): Promise<Setup> {
  const c = await startRedisCluster();
  const t = await c.topology();
  const primaries = t.filter((l) => l.flags.includes("master")).map((l) => ({ port: l.port, pid: c.nodes.find((n) => n.port === l.port)!.proc!.pid! }));
  return {
    name: "Redis Cluster, 3 primaries + 3 replicas",
    target: redisTarget({ REDIS_URL: "redis://127.0.0.1:6379", REDIS_CLUSTER_NODES: c.seeds }),
    primaries,
    pids: c.nodes.map((n) => n.proc!.pid!),
    close: () => c.close(),
  };
}

async function commandstats(port: number): Promise<Map<string, number>> {
  const r = new Redis({ port, lazyConnect: true });
  await r.connect();
  try {
    const text = await r.info("commandstats");
    const m = new Map<string, number>();
    for (const line of text.split("\n")) {
      const x = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
      if (x) m.set(x[1]!, Number(x[2]));
    }
    return m;
  } finally {
    r.disconnect();
  }
}
const IGNORED = new Set(["info", "ping", "client|setname", "client|reply", "cluster|slots", "cluster|nodes", "cluster|info", "auth", "command", "command|docs", "select", "ssubscribe", "sunsubscribe", "readonly", "asking"]);
function delta(a: Map<string, number>, b: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of b) {
    if (IGNORED.has(k)) continue;
    const d = v - (a.get(k) ?? 0);
    if (d > 0) out[k] = d;
  }
  return out;
}
const total = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

async function waitReady(w: RedisWriter): Promise<void> {
  for (let i = 0; i < 200 && !w.ready; i++) await new Promise((r) => setTimeout(r, 25));
  if (!w.ready) throw new Error("writer not ready");
  await w.barrier();
}

/** Part 1: appends of `size` bytes, one session, `n` of them, as fast as the writer takes them. */
async function appendCost(s: Setup, size: number, n: number) {
  const w = createWriterFor(s.target, { name: "bench-out", log, queueBytes: 64 << 20 });
  await waitReady(w);
  const k = sessionKeys(`rb${size}`, "00000000-0000-4000-8000-00000000abcd");
  const payloadOf = (off: number) => encodeData(off, Buffer.alloc(size, 0x61));
  // Warm-up, then measure.
  let off = 0;
  for (let i = 0; i < 200; i++) {
    appendChunk(w, k, payloadOf(off), off, Math.max(0, off - (1 << 20)), 60_000);
    off += size;
  }
  await w.barrier(k.log);
  const redis0 = s.pids.map(cpuUs);
  const self0 = selfCpuUs();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    appendChunk(w, k, payloadOf(off), off, Math.max(0, off - (1 << 20)), 60_000);
    off += size;
    // Bounded in flight, as a session's flow control keeps it.
    if (w.backlog > 1 << 20) await new Promise<void>((r) => w.onDrain(() => r()));
    if (i % 1000 === 999) await w.barrier(k.log);
  }
  await w.barrier(k.log);
  const wall = performance.now() - t0;
  const selfUs = selfCpuUs() - self0;
  const redisUs = s.pids.map((p, i) => cpuUs(p) - redis0[i]!).reduce((a, b) => a + b, 0);
  await w.close();
  return { size, n, appendsPerSec: Math.round(n / (wall / 1000)), clientUsPerAppend: +(selfUs / n).toFixed(1), redisUsPerAppend: +(redisUs / n).toFixed(1) };
}

/** Part 2: one keystroke (input publish + echo append) and 1 MB of output, counted on each primary. */
async function opsPerShard(s: Setup) {
  const w = createWriterFor(s.target, { name: "bench-ops", log });
  await waitReady(w);
  const k = sessionKeys("rbops", "00000000-0000-4000-8000-00000000beef");
  const before = await Promise.all(s.primaries.map((p) => commandstats(p.port)));
  const KEYS = 1000;
  let off = 0;
  for (let i = 0; i < KEYS; i++) {
    w.send(["PUBLISH", k.in, Buffer.from("ia")]);
    appendChunk(w, k, encodeData(off, Buffer.from("a")), off, 0, 60_000);
    off += 1;
  }
  await w.barrier();
  const mid = await Promise.all(s.primaries.map((p) => commandstats(p.port)));
  const MB = 8;
  const chunk = Buffer.alloc(16 * 1024, 0x62);
  for (let i = 0; i < (MB << 20) / chunk.length; i++) {
    appendChunk(w, k, encodeData(off, chunk), off, Math.max(0, off - (1 << 20)), 60_000);
    off += chunk.length;
  }
  await w.barrier();
  const after = await Promise.all(s.primaries.map((p) => commandstats(p.port)));
  await w.close();
  const owner = s.target.cluster ? keySlot(k.log) : null;
  return s.primaries.map((p, i) => {
    const ks = delta(before[i]!, mid[i]!);
    const mb = delta(mid[i]!, after[i]!);
    return {
      port: p.port,
      perKeystroke: +(total(ks) / KEYS).toFixed(2),
      perKeystrokeByCommand: Object.fromEntries(Object.entries(ks).map(([c, v]) => [c, +(v / KEYS).toFixed(2)])),
      perMB: +(total(mb) / MB).toFixed(1),
      slot: owner,
    };
  });
}

/** Part 3: `SESSIONS` sessions, each with a subscriber, appending 4 KiB chunks for `SECONDS`. */
async function manySessions(s: Setup) {
  const w = createWriterFor(s.target, { name: "bench-many", log, queueBytes: 256 << 20 });
  await waitReady(w);
  const sub = createRedis(s.target, { connectionName: "bench-sub" });
  const hub = createHub(sub, log);
  const ns = "rbmany";
  const keys = Array.from({ length: SESSIONS }, (_, i) => sessionKeys(ns, `00000000-0000-4000-8000-${i.toString(16).padStart(12, "0")}`));
  let received = 0;
  await Promise.all(keys.map((k) => hub.subscribe(k.out, (m) => (received += m.length - 9))));
  const chunk = Buffer.alloc(4096, 0x63);
  const offs = new Array<number>(SESSIONS).fill(0);
  const redis0 = s.pids.map(cpuUs);
  const prim0 = s.primaries.map((p) => cpuUs(p.pid));
  const self0 = selfCpuUs();
  const t0 = performance.now();
  let sent = 0;
  while (performance.now() - t0 < SECONDS * 1000) {
    for (let i = 0; i < SESSIONS; i++) {
      const k = keys[i]!;
      appendChunk(w, k, encodeData(offs[i]!, chunk), offs[i]!, Math.max(0, offs[i]! - (256 << 10)), 60_000);
      offs[i]! += chunk.length;
      sent += chunk.length;
    }
    // Redis keeps up or the generator waits: what counts is what was delivered.
    await w.barrier();
  }
  const wall = (performance.now() - t0) / 1000;
  for (let i = 0; i < 100 && received < sent; i++) await new Promise((r) => setTimeout(r, 20));
  const redisUs = s.pids.map((p, i) => cpuUs(p) - redis0[i]!).reduce((a, b) => a + b, 0);
  const primUs = s.primaries.map((p, i) => cpuUs(p.pid) - prim0[i]!);
  const selfUs = selfCpuUs() - self0;
  const mb = sent / 2 ** 20;
  const memory = await Promise.all(
    s.primaries.map(async (p) => {
      const r = new Redis({ port: p.port, lazyConnect: true });
      await r.connect();
      const m = Number(/used_memory:(\d+)/.exec(await r.info("memory"))![1]);
      r.disconnect();
      return m;
    }),
  );
  await w.close();
  sub.disconnect();
  return {
    sessions: SESSIONS,
    seconds: +wall.toFixed(2),
    mbPerSec: +(mb / wall).toFixed(1),
    deliveredAll: received >= sent,
    redisCpuMsPerMB: +(redisUs / 1000 / mb).toFixed(2),
    perPrimaryCpuMsPerMB: primUs.map((u) => +(u / 1000 / mb).toFixed(2)),
    perPrimaryCpuShare: primUs.map((u) => +(u / (wall * 1e6)).toFixed(2)),
    clientCpuMsPerMB: +(selfUs / 1000 / mb).toFixed(2),
    usedMemoryMiBPerPrimary: memory.map((m) => +(m / 2 ** 20).toFixed(1)),
  };
}

const results: Record<string, unknown> = { machine: { cores: (await import("node:os")).cpus().length, load: (await import("node:os")).loadavg().map((v) => v.toFixed(2)).join(" ") } };
for (const make of [single, cluster]) {
  const s = await make();
  try {
    say(`${s.name}: append cost`);
    const cost = [await appendCost(s, 64, 20_000), await appendCost(s, 16 * 1024, 3000)];
    say(`${s.name}: commands per shard`);
    const ops = await opsPerShard(s);
    say(`${s.name}: ${SESSIONS} sessions`);
    const many = await manySessions(s);
    results[s.name] = { cost, ops, many };
  } finally {
    await s.close();
  }
}
const text = JSON.stringify(results, null, 2);
process.stdout.write(`${text}\n`);
if (args.out) writeFileSync(args.out, text);
