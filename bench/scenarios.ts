/**
 * The benchmark scenarios. Each one drives a Target (the system or the bare
 * bridge) with BenchClient and returns plain numbers; run.ts puts both side by
 * side. Every scenario is bounded in time and counts what it cannot do as an
 * error instead of hanging.
 */
import type { Redis } from "ioredis";
import { namespacePatterns } from "@molecule/shared";
import { BenchClient } from "./client.ts";
import { commandsSince, contextSwitches, cpuSince, cpuSnapshot, memorySampler, switchesSince, redisCommandCalls, percentiles, redisUsedMemory, rssByRole, type Proc } from "./measure.ts";
import type { Target } from "./system.ts";

const KEY = Buffer.from("a");
const DEL = Buffer.from([0x7f]);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const msg = (err: unknown) => (err instanceof Error ? err.message : String(err)).slice(0, 300);
const round = (v: number, d = 1) => Math.round(v * 10 ** d) / 10 ** d;
const serverRoles = (procs: Proc[]) => procs.filter((p) => p.role !== "redis" && p.role !== "lb");

function open(t: Target, o: { cols?: number; rows?: number; ack?: number | "manual" } = {}): BenchClient {
  return new BenchClient(t.terminalUrl, { token: t.token, ...o });
}

/** Opens a shell and waits for its prompt to be drawn completely. */
async function shell(t: Target, o: { cols?: number; ack?: number | "manual" } = {}): Promise<BenchClient> {
  const c = open(t, o);
  await c.waitBytes(1, 20_000);
  await c.settle(150);
  return c;
}

/**
 * One keystroke pair: a printable byte, wait for its echo; DEL, wait for its
 * echo (`delEcho` bytes, learnt beforehand). Returns both round trips in µs.
 */
async function keystrokePair(c: BenchClient, delEcho: number, ms = 15_000): Promise<[number, number]> {
  let r = c.received;
  let t0 = performance.now();
  c.send(KEY);
  await c.waitBytes(r + 1, ms);
  const a = (performance.now() - t0) * 1000;
  r = c.received;
  t0 = performance.now();
  c.send(DEL);
  await c.waitBytes(r + delEcho, ms);
  return [a, (performance.now() - t0) * 1000];
}

/**
 * How many bytes the line editor answers a DEL with (readline: "\b\x1b[K"), waiting for quiet.
 * On a loaded machine a late prompt redraw can land in the measuring window and only ever adds
 * bytes, so the smallest of three tries counts.
 */
async function learnDelEcho(c: BenchClient): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const r0 = c.received;
    c.send(KEY);
    await c.waitBytes(r0 + 1, 30_000);
    await c.settle(60);
    const r = c.received;
    c.send(DEL);
    await c.waitBytes(r + 1, 30_000);
    await c.settle(60);
    best = Math.min(best, c.received - r);
  }
  return best;
}

// ---- open ----------------------------------------------------------------------------------

export async function scenarioOpen(t: Target, n: number) {
  const firstByte: number[] = [];
  const hello: number[] = [];
  const errors: string[] = [];
  for (let i = 0; i < n; i++) {
    const c = open(t);
    try {
      await c.waitBytes(1, 15_000);
      firstByte.push(c.tFirstByte - c.t0);
      hello.push(c.tHello - c.t0);
    } catch (err) {
      errors.push(msg(err));
    }
    await c.close();
  }
  return { opens: n, ms: percentiles(firstByte), helloMs: percentiles(hello), errors };
}

// ---- echo ----------------------------------------------------------------------------------

/**
 * Echo on several targets in one go, in alternating blocks (target A's block,
 * then B's, then A's again...), after a warm-up on each: the speed of a shared
 * 2-core VM drifts by tens of percent within a minute, and alternating makes the
 * drift hit every target alike, so the ratios measure the targets, not the moment.
 */
export async function scenarioEchoInterleaved(targets: Target[], o: { pairs: number; blocks: number; warmup: number }, redis?: Redis) {
  type Run = { c: BenchClient; delEcho: number; rtt: number[]; cpu: Record<string, number>; switches: Record<string, number>; redisCalls: Record<string, number>; errors: string[] };
  const runs: (Run | null)[] = [];
  const failed: string[] = [];
  for (const t of targets) {
    try {
      const c = await shell(t, { cols: 120 });
      const delEcho = await learnDelEcho(c);
      for (let i = 0; i < o.warmup; i++) await keystrokePair(c, delEcho);
      runs.push({ c, delEcho, rtt: [], cpu: {}, switches: {}, redisCalls: {}, errors: [] });
      failed.push("");
    } catch (err) {
      runs.push(null);
      failed.push(msg(err));
    }
  }
  const perBlock = Math.max(1, Math.round(o.pairs / o.blocks));
  for (let b = 0; b < o.blocks; b++) {
    for (let i = 0; i < targets.length; i++) {
      const r = runs[i];
      if (!r || r.errors.length) continue;
      // Redis commands per keystroke (the system's, whose hot path is Redis both ways): INFO
      // commandstats is read outside the CPU window, so the reads themselves are not counted.
      const withRedis = redis && targets[i]!.procs.some((p) => p.role === "redis");
      const calls0 = withRedis ? await redisCommandCalls(redis) : null;
      const switches0 = new Map(targets[i]!.procs.map((p) => [p.pid, contextSwitches(p.pid)]));
      const before = cpuSnapshot(targets[i]!.procs);
      try {
        for (let k = 0; k < perBlock; k++) r.rtt.push(...(await keystrokePair(r.c, r.delEcho)));
      } catch (err) {
        r.errors.push(msg(err));
      }
      for (const [role, ms] of Object.entries(cpuSince(targets[i]!.procs, before))) r.cpu[role] = (r.cpu[role] ?? 0) + ms;
      for (const [role, n] of Object.entries(switchesSince(targets[i]!.procs, switches0))) r.switches[role] = (r.switches[role] ?? 0) + n;
      if (calls0) {
        for (const [cmd, n] of Object.entries(commandsSince(calls0, await redisCommandCalls(redis!)))) r.redisCalls[cmd] = (r.redisCalls[cmd] ?? 0) + n;
        // The snapshot that ends this block is one INFO too many.
        r.redisCalls.info = (r.redisCalls.info ?? 1) - 1;
      }
    }
  }
  await Promise.all(runs.map((r) => r?.c.close()));
  return targets.map((t, i) => {
    const r = runs[i];
    if (!r) return { keystrokes: 0, us: percentiles([]), cpuUsPerKey: {}, wakeUpsPerKey: {}, serverCpuUsPerKey: 0, errors: [failed[i]!] };
    const keystrokes = r.rtt.length;
    const cpuUsPerKey: Record<string, number> = {};
    for (const [role, ms] of Object.entries(r.cpu)) cpuUsPerKey[role] = round((ms * 1000) / Math.max(1, keystrokes));
    const server = [...new Set(serverRoles(t.procs).map((p) => p.role))];
    const serverUs = server.reduce((s, role) => s + (cpuUsPerKey[role] ?? 0), 0);
    const redisCallsPerKey = Object.keys(r.redisCalls).length ? perUnit(r.redisCalls, keystrokes) : undefined;
    // Context switches per keystroke: how often each process was put to sleep and woken for one.
    const wakeUpsPerKey: Record<string, number> = {};
    for (const [role, n] of Object.entries(r.switches)) wakeUpsPerKey[role] = Math.round((n / Math.max(1, keystrokes)) * 100) / 100;
    return { keystrokes, us: percentiles(r.rtt), cpuUsPerKey, wakeUpsPerKey, serverCpuUsPerKey: round(serverUs), redisCallsPerKey, errors: r.errors };
  });
}

// ---- throughput ------------------------------------------------------------------------------

/**
 * Checks, chunk by chunk, that the output of `head -c N /dev/zero | tr '\0' x |
 * fold -w 100; echo __DONE__` arrives exactly: after the echoed command line,
 * N x's in lines of 100 separated by CR LF (the last line has no newline), then
 * `__DONE__`. Any byte lost, repeated or changed makes it fail.
 */
export class FoldValidator {
  readonly expected: number;
  bytes = 0;
  firstBad = -1;
  done = false;
  ok = false;
  private phase: "echo" | "pre" | "data" | "post" = "echo";
  private echoSeen = Buffer.alloc(0);
  private post = Buffer.alloc(0);
  private static readonly LINE = Buffer.from(`${"x".repeat(100)}\r\n`);
  private static readonly TEMPLATE = Buffer.concat(Array.from({ length: 700 }, () => FoldValidator.LINE));
  private static readonly DONE = Buffer.from("__DONE__");
  private resolveDone!: () => void;
  readonly finished = new Promise<void>((r) => (this.resolveDone = r));

  constructor(readonly xs: number) {
    this.expected = xs + 2 * (Math.ceil(xs / 100) - 1);
  }

  feed(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length && !this.done) {
      if (this.phase === "echo") {
        // The echo of the command line ends with "__DONE__" (then CR LF and mode sequences).
        const look = Buffer.concat([this.echoSeen, chunk.subarray(i)]);
        const at = look.indexOf(FoldValidator.DONE);
        if (at < 0) {
          this.echoSeen = look.subarray(Math.max(0, look.length - 8));
          return;
        }
        i += at + FoldValidator.DONE.length - this.echoSeen.length;
        this.phase = "pre";
      } else if (this.phase === "pre") {
        const at = chunk.indexOf(0x78, i);
        if (at < 0) return;
        i = at;
        this.phase = "data";
      } else if (this.phase === "data") {
        const want = Math.min(chunk.length - i, this.expected - this.bytes, 64 * 1024);
        const at = this.bytes % FoldValidator.LINE.length;
        if (chunk.compare(FoldValidator.TEMPLATE, at, at + want, i, i + want) !== 0 && this.firstBad < 0) this.firstBad = this.bytes;
        this.bytes += want;
        i += want;
        if (this.bytes === this.expected) this.phase = "post";
      } else {
        const need = FoldValidator.DONE.length - this.post.length;
        this.post = Buffer.concat([this.post, chunk.subarray(i, i + need)]);
        i += need;
        if (this.post.length === FoldValidator.DONE.length) {
          this.ok = this.firstBad < 0 && this.post.equals(FoldValidator.DONE);
          if (!this.post.equals(FoldValidator.DONE) && this.firstBad < 0) this.firstBad = this.bytes;
          this.done = true;
          this.resolveDone();
        }
      }
    }
  }
}

export async function scenarioThroughput(t: Target, redis: Redis, xs: number) {
  const c = await shell(t, { cols: 200 });
  const v = new FoldValidator(xs);
  c.onData = (chunk) => v.feed(chunk);
  const errors: string[] = [];
  const mem = memorySampler(t.procs, t.name === "system" ? redis : null);
  const calls0 = t.name === "system" ? await redisCommandCalls(redis) : null;
  const before = cpuSnapshot(t.procs);
  const received0 = c.received;
  const t0 = performance.now();
  c.send(`head -c ${xs} /dev/zero | tr '\\0' x | fold -w 100; echo __DONE__\r`);
  const limit = Math.max(30_000, xs / 500); // no slower than 0.5 MB/s
  const timer = setTimeout(() => errors.push(`not done within ${limit} ms`), limit);
  await Promise.race([v.finished, c.closed, sleep(limit)]);
  clearTimeout(timer);
  const sec = (performance.now() - t0) / 1000;
  const cpu = cpuSince(t.procs, before);
  const calls = calls0 ? commandsSince(calls0, await redisCommandCalls(redis)) : null;
  const memory = await mem.stop();
  await c.close();
  if (!v.done) errors.push(`output incomplete: ${v.bytes} of ${v.expected} payload bytes`);
  if (v.firstBad >= 0) errors.push(`output differs from the expected bytes at payload byte ${v.firstBad}`);
  if (c.errors.length) errors.push(...c.errors.map((e) => `${e.code}: ${e.message}`));
  const mb = v.expected / 1e6;
  const server = [...new Set(t.procs.filter((p) => p.role !== "lb").map((p) => p.role))];
  const serverCpuMs = server.reduce((s, r) => s + (cpu[r] ?? 0), 0);
  return {
    payloadBytes: v.expected,
    receivedBytes: c.received - received0,
    everyByte: v.ok,
    seconds: round(sec, 3),
    mbPerSec: round(mb / sec, 2),
    cpuMs: Object.fromEntries(Object.entries(cpu).map(([k, ms]) => [k, round(ms)])),
    cpuMsPerMB: Object.fromEntries(Object.entries(cpu).map(([k, ms]) => [k, round(ms / mb, 2)])),
    /** API + worker + Redis (system) or the bridge (bare), per MB of payload. */
    serverCpuMsPerMB: round(serverCpuMs / mb, 2),
    /** Redis commands per MB of payload (includes the memory sampler's INFO reads and anything else running). */
    redisCallsPerMB: calls ? perUnit(calls, mb) : undefined,
    memory,
    errors,
  };
}

type ThroughputResult = Awaited<ReturnType<typeof scenarioThroughput>>;

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
};

/**
 * Several throughput rounds of one target as one result: the median speed and
 * CPU per MB (one 64 MB run takes ~2 s, and the VM's speed drifts more than the
 * differences being measured), the worst memory growth, every byte in every round.
 * Redis command counts are the first round's (they hardly vary between rounds).
 */
export function combineThroughput(rounds: ThroughputResult[]): ThroughputResult & { rounds: { mbPerSec: number; serverCpuMsPerMB: number }[] } {
  const first = rounds[0]!;
  const roles = Object.keys(first.cpuMsPerMB);
  const memory: typeof first.memory = {};
  for (const r of rounds) for (const [k, m] of Object.entries(r.memory)) if (!memory[k] || m.growth > memory[k]!.growth) memory[k] = m;
  return {
    ...first,
    everyByte: rounds.every((r) => r.everyByte),
    seconds: median(rounds.map((r) => r.seconds)),
    mbPerSec: median(rounds.map((r) => r.mbPerSec)),
    cpuMs: Object.fromEntries(roles.map((k) => [k, median(rounds.map((r) => r.cpuMs[k] ?? 0))])),
    cpuMsPerMB: Object.fromEntries(roles.map((k) => [k, median(rounds.map((r) => r.cpuMsPerMB[k] ?? 0))])),
    serverCpuMsPerMB: median(rounds.map((r) => r.serverCpuMsPerMB)),
    memory,
    errors: rounds.flatMap((r) => r.errors),
    rounds: rounds.map((r) => ({ mbPerSec: r.mbPerSec, serverCpuMsPerMB: r.serverCpuMsPerMB })),
  };
}

/** Counts per unit, the largest first, plus their total. */
function perUnit(counts: Record<string, number>, units: number): Record<string, number> {
  const out: Record<string, number> = {};
  let total = 0;
  for (const [k, v] of Object.entries(counts).sort((a, b) => b[1] - a[1])) {
    if (v <= 0) continue;
    out[k] = round(v / Math.max(1, units), 2);
    total += v;
  }
  return { total: round(total / Math.max(1, units), 2), ...out };
}

// ---- flood -----------------------------------------------------------------------------------

/**
 * `yes` with a client that consumes (and acks) only `rate` bytes per second,
 * then Ctrl-C and `echo __BACK__`: how long until the answer is consumed.
 */
export async function scenarioFlood(t: Target, redis: Redis, o: { floodMs: number; rate: number }) {
  const c = await shell(t, { cols: 120, ack: "manual" });
  c.ack();
  const errors: string[] = [];
  const queue: Buffer[] = [];
  let consumed = c.offset;
  let budget = 0;
  let last = performance.now();
  let searching = false;
  let window = Buffer.alloc(0);
  let seenAt = 0;
  const marker = Buffer.from("__BACK__");
  let resolveSeen!: () => void;
  const seen = new Promise<void>((r) => (resolveSeen = r));
  c.onData = (chunk) => queue.push(chunk);

  // The consumer: takes at most `rate` bytes per second off the received queue and acks what it took.
  const tick = setInterval(() => {
    const now = performance.now();
    budget += ((now - last) / 1000) * o.rate;
    last = now;
    while (budget >= 1 && queue.length) {
      const head = queue[0]!;
      const n = Math.min(head.length, Math.floor(budget));
      const part = head.subarray(0, n);
      if (n === head.length) queue.shift();
      else queue[0] = head.subarray(n);
      consumed += n;
      budget -= n;
      if (searching && !seenAt) {
        window = Buffer.concat([window.subarray(Math.max(0, window.length - marker.length)), part]);
        if (window.indexOf(marker) >= 0) {
          seenAt = performance.now();
          resolveSeen();
        }
      }
    }
    // An idle consumer does not bank time to read faster later.
    if (queue.length === 0) budget = Math.min(budget, o.rate / 100);
    c.ack(consumed);
  }, 5);

  const mem = memorySampler(t.procs, t.name === "system" ? redis : null);
  const start = c.offset;
  const t0 = performance.now();
  c.send("yes\r");
  await sleep(o.floodMs);
  const backlog = c.offset - consumed;
  const deliveredBeforeCtrlC = c.offset - start;
  searching = true;
  const tC = performance.now();
  c.send(Buffer.from([0x03]));
  // The answer is "__BACK__"; the typed command echoes as __BA''CK__, so only the answer matches.
  c.send("echo __BA''CK__\r");
  const limit = 30_000;
  await Promise.race([seen, sleep(limit), c.closed]);
  if (!seenAt) errors.push(`no __BACK__ within ${limit} ms of Ctrl-C`);
  const memory = await mem.stop();
  clearInterval(tick);
  if (c.errors.length) errors.push(...c.errors.map((e) => `${e.code}: ${e.message}`));
  await c.close();
  return {
    floodMs: o.floodMs,
    consumeBytesPerSec: o.rate,
    deliveredBeforeCtrlC,
    consumerRate: round(deliveredBeforeCtrlC / ((tC - t0) / 1000) / 1e6, 3),
    /** Received but not yet consumed when Ctrl-C was pressed. */
    backlogAtCtrlC: backlog,
    ctrlCToPromptMs: seenAt ? round(seenAt - tC) : null,
    memory,
    errors,
  };
}

// ---- concurrent ------------------------------------------------------------------------------

async function redisKeysMemory(redis: Redis, ns: string): Promise<number> {
  let total = 0;
  for (const pattern of namespacePatterns(ns)) {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      cursor = next;
      if (keys.length) {
        const pipe = redis.pipeline();
        for (const k of keys) pipe.memory("USAGE", k, "SAMPLES", "0");
        for (const [, v] of (await pipe.exec()) ?? []) total += Number(v ?? 0);
      }
    } while (cursor !== "0");
  }
  return total;
}

async function pool<T>(items: T[], limit: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/**
 * `sessions` shells opened at once (at most `openConcurrency` connecting at a
 * time), then keystroke pairs on `active` of them while the rest stay idle;
 * server memory per session while all are open.
 */
export async function scenarioConcurrent(
  t: Target,
  redis: Redis,
  ns: string | null,
  o: { sessions: number; active: number; pairs: number; openConcurrency?: number; echoConcurrency?: number },
) {
  const errors: string[] = [];
  const procs = t.procs.filter((p) => p.role !== "redis");
  const rss0 = rssByRole(procs);
  const redis0 = t.name === "system" ? await redisUsedMemory(redis) : 0;
  const keys0 = t.name === "system" && ns ? await redisKeysMemory(redis, ns) : 0;
  const clients: BenchClient[] = [];
  const opens: number[] = [];
  const cpu0 = cpuSnapshot(t.procs);
  const tAll = performance.now();
  let lastOpen = 0;
  await pool(
    Array.from({ length: o.sessions }, (_, i) => i),
    o.openConcurrency ?? o.sessions,
    async () => {
      const c = open(t, { cols: 120 });
      clients.push(c);
      try {
        await c.waitBytes(1, 60_000);
        opens.push(c.tFirstByte - c.t0);
        lastOpen = Math.max(lastOpen, c.tFirstByte);
      } catch (err) {
        errors.push(`open: ${msg(err)}`);
      }
    },
  );
  const allOpenMs = round(lastOpen - tAll);
  const opened = clients.filter((c) => c.received > 0 && !c.closeInfo);
  // CPU per open of each server process while they opened (the shells themselves are not counted;
  // the fork of each is, in the process that forks it; PostgreSQL is not among the processes).
  const cpuMsPerOpen: Record<string, number> = {};
  for (const [role, ms] of Object.entries(cpuSince(t.procs, cpu0))) cpuMsPerOpen[role] = Math.round((ms / Math.max(1, opened.length)) * 100) / 100;

  // Echo on `active` sessions at once; the rest idle.
  const active = opened.slice(0, o.active);
  const rtt: number[] = [];
  await pool(active, o.echoConcurrency ?? active.length, async (c) => {
    try {
      await c.settle(100, 30_000);
      const delEcho = await learnDelEcho(c);
      for (let i = 0; i < o.pairs; i++) rtt.push(...(await keystrokePair(c, delEcho, 30_000)));
    } catch (err) {
      errors.push(`echo: ${msg(err)}`);
    }
  });
  const rss1 = rssByRole(procs);
  const redis1 = t.name === "system" ? await redisUsedMemory(redis) : 0;
  const keys1 = t.name === "system" && ns ? await redisKeysMemory(redis, ns) : 0;
  const n = Math.max(1, opened.length);
  const perSession: Record<string, number> = {};
  for (const role of Object.keys(rss1)) perSession[role] = Math.round((rss1[role]! - (rss0[role] ?? 0)) / n);
  if (t.name === "system") {
    perSession["redis.used_memory"] = Math.round((redis1 - redis0) / n);
    perSession["redis.keys"] = Math.round((keys1 - keys0) / n);
  }
  // Server memory per session: every server process, plus Redis (its used_memory growth) for the system.
  const serverBytes = Object.entries(perSession)
    .filter(([k]) => k !== "lb" && k !== "redis.keys")
    .reduce((s, [, v]) => s + v, 0);
  for (const c of clients) if (c.errors.length) errors.push(...c.errors.slice(0, 2).map((e) => `${e.code}: ${e.message}`));
  await Promise.all(clients.map((c) => Promise.race([c.close(), sleep(10_000)])));
  return {
    sessions: o.sessions,
    opened: opened.length,
    allOpenMs,
    openMs: percentiles(opens),
    cpuMsPerOpen,
    active: active.length,
    echoUs: percentiles(rtt),
    memoryPerSessionBytes: perSession,
    serverBytesPerSession: serverBytes,
    errors: errors.slice(0, 20),
    errorCount: errors.length,
  };
}
