/**
 * The failover storm: an API node holding every session of a cluster is killed
 * (SIGKILL) while each shell prints a numbered tick 4 times a second; every
 * client re-attaches at once, through the load balancer (so the remaining node),
 * with its session and offset. Measured: the time from the kill to each client's
 * hello and to its first echo after it, echo latency during the storm, and every
 * byte: offsets continuous across both connections (no byte lost or repeated),
 * no gap, and every tick exactly once, in order.
 */
import { startCluster } from "../scripts/cluster.ts";
import { BenchClient } from "./client.ts";
import { percentiles } from "./measure.ts";
import { readyWorkspace } from "./system.ts";

export interface StormOptions {
  sessions: number;
  /** Ticks each shell prints, 4 a second; the kill comes after the 4th. */
  ticks: number;
}

/** One session's client across its connections, with the byte accounting the scenario checks. */
class StormSession {
  conn: BenchClient;
  session = "";
  /** The next stream offset this session expects: a chunk at another offset is a byte lost or repeated. */
  next = -1;
  bytes = 0;
  lost = 0;
  repeated = 0;
  gaps = 0;
  text = "";
  reattachMs = -1;
  firstEchoMs = -1;
  reattachAttempts = 0;

  constructor(url: string, token: string) {
    this.conn = this.connect(url, token);
  }

  connect(url: string, token: string): BenchClient {
    const c = new BenchClient(url, { token });
    c.onData = (chunk, offset) => {
      if (this.next >= 0 && offset > this.next) {
        this.lost += offset - this.next;
        if (process.env.BENCH_STORM_DEBUG) process.stderr.write(`lost: expected ${this.next}, got ${offset} (hello ${c.base}, received ${c.received})\n`);
      }
      if (this.next >= 0 && offset < this.next) this.repeated += Math.min(chunk.length, this.next - offset);
      this.next = offset + chunk.length;
      this.bytes += chunk.length;
      this.text += chunk.toString("latin1");
    };
    this.conn = c;
    return c;
  }

  /** Sends one probe byte the tick output never holds and resolves with its echo latency in ms. */
  async echo(ms = 15_000): Promise<number> {
    const t0 = performance.now();
    const seen = this.conn.waitFor("Q", ms);
    this.conn.send("Q");
    await seen;
    return performance.now() - t0;
  }

  /** Every tick 1..n exactly once, in order (the probe echoes may sit between lines). */
  ticksOk(n: number): boolean {
    const got = [...this.text.matchAll(/t(\d+)\r\n/g)].map((m) => Number(m[1]));
    return got.length === n && got.every((v, i) => v === i + 1);
  }
}

async function inBatches<T>(items: T[], size: number, fn: (t: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn));
}

export async function scenarioStorm(env: NodeJS.ProcessEnv, logDir: string, o: StormOptions) {
  const c = await startCluster({
    port: 0,
    apis: 2,
    workers: 2,
    // Either worker may end up with every session; claims may queue while 500 shells start.
    env: { ...env, MOLECULE_WORKER_CAPACITY: String(o.sessions + 50), MOLECULE_CLAIM_TIMEOUT_MS: "60000" },
    logDir,
  });
  const sessions: StormSession[] = [];
  try {
    const ws = await readyWorkspace(c.url, c.token);
    const direct = `${c.apiUrls[0]!.replace(/^http/, "ws")}/workspaces/${ws}/terminal`;
    const viaLb = `${c.wsUrl}/workspaces/${ws}/terminal`;
    // Every session on api-1, directly (the load balancer would spread them over both nodes).
    await inBatches(Array.from({ length: o.sessions }, (_, i) => i), 50, async () => {
      const s = new StormSession(direct, c.token);
      sessions.push(s);
      await s.conn.hello(60_000);
      s.session = s.conn.session!;
      // The shell reads input: its answer, built by the shell so the typed line's echo never matches.
      const ready = s.conn.waitFor("ready-2", 60_000);
      s.conn.send("echo ready-$((1+1))\r");
      await ready;
    });
    // Ticks without a fork per tick (read -t on a pipe nobody writes): 4 a second per shell.
    const tickCmd = `exec 3<> <(:); for i in $(seq 1 ${o.ticks}); do echo t$i; read -t 0.25 -u 3; done; echo storm-$((6*7))\r`;
    for (const s of sessions) s.conn.send(tickCmd);
    await Promise.all(sessions.map((s) => s.conn.waitFor("t4\r\n", 60_000)));

    const reattach = (s: StormSession, t0: number): Promise<void> =>
      (async () => {
        for (;;) {
          s.reattachAttempts++;
          const conn = s.connect(`${viaLb}?session=${s.session}&offset=${s.next}`, c.token);
          try {
            await conn.hello(15_000);
            break;
          } catch (err) {
            if (s.reattachAttempts >= 20) throw err;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        s.reattachMs = performance.now() - t0;
      })();

    const killedAt = performance.now();
    const closed = sessions.map((s) => s.conn.closed);
    c.apis[0]!.child.kill("SIGKILL");
    const echoes: number[] = [];
    await Promise.all(
      sessions.map(async (s, i) => {
        await closed[i];
        await reattach(s, killedAt);
        echoes.push(await s.echo());
        s.firstEchoMs = performance.now() - killedAt;
        // Two more probes each, during the storm (the others are still re-attaching).
        echoes.push(await s.echo());
        echoes.push(await s.echo());
      }),
    );
    const lastReattachMs = Math.max(...sessions.map((s) => s.reattachMs));
    const lastEchoMs = Math.max(...sessions.map((s) => s.firstEchoMs));
    await Promise.all(sessions.map((s) => s.conn.waitFor("storm-42", 60_000)));
    for (const s of sessions) s.gaps = s.conn.errors.filter((e) => e.code === "gap").length;
    const echo = percentiles(echoes);
    const bad = sessions.filter((s) => !s.ticksOk(o.ticks));
    return {
      sessions: o.sessions,
      lastReattachMs: Math.round(lastReattachMs),
      reattachP50Ms: Math.round(percentiles(sessions.map((s) => s.reattachMs)).p50),
      lastEchoMs: Math.round(lastEchoMs),
      allEchoWithin5s: lastEchoMs <= 5000,
      echoDuringStormMs: { p50: round1(echo.p50), p99: round1(echo.p99), max: round1(echo.max), n: echo.n },
      reattachAttemptsMax: Math.max(...sessions.map((s) => s.reattachAttempts)),
      bytes: sessions.reduce((a, s) => a + s.bytes, 0),
      bytesLost: sessions.reduce((a, s) => a + s.lost, 0),
      bytesRepeated: sessions.reduce((a, s) => a + s.repeated, 0),
      gaps: sessions.reduce((a, s) => a + s.gaps, 0),
      sessionsWithWrongTicks: bad.length,
      ...(bad[0] ? { firstWrong: bad[0].text.slice(-300) } : {}),
    };
  } finally {
    await Promise.allSettled(sessions.map((s) => s.conn.close()));
    await c.stop();
  }
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

export type StormResult = Awaited<ReturnType<typeof scenarioStorm>>;

/** The storm as a table (bench/results/latest.md). */
export function stormMarkdown(r: { system?: StormResult | { failed: string } } | undefined): string {
  if (!r?.system) return "";
  if ("failed" in r.system) return `\n## Failover storm\n\nfailed: ${r.system.failed}\n`;
  const s = r.system;
  return [
    "",
    `## Failover storm: ${s.sessions} sessions on one API node, SIGKILL, every client re-attaches through haproxy`,
    "",
    "| figure | value | target |",
    "|---|---:|---|",
    `| last re-attach (kill → hello) | ${s.lastReattachMs} ms (p50 ${s.reattachP50Ms} ms) | |`,
    `| last session echoing again (kill → first echo) | ${s.lastEchoMs} ms | ≤ 5000 ms${s.allEchoWithin5s ? "" : " (**missed**)"} |`,
    `| echo during the storm p50 / p99 / max | ${s.echoDuringStormMs.p50} / ${s.echoDuringStormMs.p99} / ${s.echoDuringStormMs.max} ms (${s.echoDuringStormMs.n} probes) | |`,
    `| bytes received / lost / repeated / gaps | ${s.bytes} / ${s.bytesLost} / ${s.bytesRepeated} / ${s.gaps} | 0 lost, 0 repeated |`,
    `| sessions whose ticks were not each once, in order | ${s.sessionsWithWrongTicks} | 0 |`,
    "",
  ].join("\n");
}
