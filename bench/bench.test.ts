/**
 * Keeps the benchmark from rotting: a very short run (`--quick`) against the
 * bare bridge and the cluster, in this test run's database and a Redis prefix of
 * its own, then checks that every byte arrived and the results have their shape.
 * No timing is asserted: figures from a loaded test machine mean nothing.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, onTestFinished } from "vitest";
import { ROOT } from "../scripts/processes.ts";
import { testUrls, uniqueNs } from "../test/helpers/env.ts";
import { FoldValidator } from "./scenarios.ts";

const x100 = `${"x".repeat(100)}\r\n`;
const echoLine = "$ head -c 250 /dev/zero | tr '\\0' x | fold -w 100; echo __DONE__\r\n\x1b[?2004l\r";
/** What the shell prints for 250 x's: the echoed command, the lines, then __DONE__ and a prompt. */
const output = (payload: string) => Buffer.from(`${echoLine}${payload}__DONE__\r\n$ `);
const feed = (v: FoldValidator, b: Buffer, size: number) => {
  for (let i = 0; i < b.length; i += size) v.feed(b.subarray(i, i + size));
  return v;
};

describe("throughput check (FoldValidator)", () => {
  const good = `${x100}${x100}${"x".repeat(50)}`;

  it("accepts the exact output, however it is split into chunks", () => {
    for (const size of [1, 3, 7, 100, 4096]) {
      const v = feed(new FoldValidator(250), output(good), size);
      expect(v.done && v.ok, `chunks of ${size}`).toBe(true);
      expect(v.bytes).toBe(254);
    }
  });

  it("rejects a lost byte, a repeated byte and a changed byte", () => {
    const lost = good.slice(0, 150) + good.slice(151);
    const repeated = good.slice(0, 150) + good.slice(150, 151) + good.slice(150);
    const changed = `${good.slice(0, 150)}y${good.slice(151)}`;
    for (const bad of [lost, repeated, changed]) {
      const v = feed(new FoldValidator(250), output(bad), 64);
      expect(v.ok).toBe(false);
    }
  });
});

describe("pnpm bench --quick", () => {
  const out = mkdtempSync(join(tmpdir(), "molecule-bench-test-"));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it("runs every scenario against the bare bridge and the cluster and writes latest.json and latest.md", async () => {
    const { databaseUrl, redisUrl } = testUrls();
    const child = spawn(process.execPath, ["--import", "tsx", "bench/run.ts", "--quick", "--out", out], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        REDIS_URL: redisUrl,
        DATABASE_URL: databaseUrl,
        BENCH_DATABASE_URL: databaseUrl,
        BENCH_REDIS_PREFIX: uniqueNs(),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    // Timed out or failed: the bench stops what it started (its SIGINT handler) rather than run on beside the next tests.
    onTestFinished(async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGINT");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000).unref())]);
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    });
    let log = "";
    child.stdout.on("data", (b: Buffer) => (log += b.toString()));
    child.stderr.on("data", (b: Buffer) => (log += b.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code, log.slice(-3000)).toBe(0);

    const r = JSON.parse(readFileSync(join(out, "latest.json"), "utf8"));
    expect(r).toMatchObject({ version: 1, quick: true });
    expect(r.machine).toMatchObject({ cores: expect.any(Number), cpu: expect.any(String), node: process.version });
    for (const name of ["open", "echo", "throughput", "flood", "concurrent", "thousand"]) {
      // echo also runs the bare bridge behind the same haproxy (the load balancer's share).
      const targets = name === "echo" ? ["bare", "bareLb", "ratio", "system"] : ["bare", "ratio", "system"];
      expect(Object.keys(r.scenarios[name] ?? {}).sort(), name).toEqual(targets);
      for (const t of ["system", "bare"]) expect(r.scenarios[name][t].failed, `${name} ${t}`).toBeUndefined();
    }
    const s = r.scenarios;
    for (const t of ["system", "bare"]) {
      // Every byte of the throughput command arrived, exactly (FoldValidator), and nothing failed.
      expect(s.throughput[t]).toMatchObject({ everyByte: true, errors: [], payloadBytes: 1_000_000 + 2 * 9_999 });
      expect(s.throughput[t].receivedBytes).toBeGreaterThan(s.throughput[t].payloadBytes);
      expect(s.open[t].ms.n).toBe(r.settings.opens);
      expect(s.echo[t].keystrokes).toBe(2 * r.settings.echo.pairs);
      expect(s.echo[t].errors).toEqual([]);
      expect(s.flood[t].errors).toEqual([]);
      expect(s.flood[t].ctrlCToPromptMs).toEqual(expect.any(Number));
      expect(s.concurrent[t], JSON.stringify(s.concurrent[t].errors)).toMatchObject({ opened: r.settings.concurrent.sessions, errorCount: 0 });
      expect(s.thousand[t], JSON.stringify(s.thousand[t].errors)).toMatchObject({ opened: r.settings.thousand.sessions, errorCount: 0 });
    }
    // The failover storm: every session re-attached through the other node with every byte once.
    expect(s.storm.system, JSON.stringify(s.storm.system)).toMatchObject({ sessions: r.settings.storm.sessions, bytesLost: 0, bytesRepeated: 0, gaps: 0, sessionsWithWrongTicks: 0 });
    expect(s.storm.system.lastEchoMs).toBeGreaterThan(0);
    // Idle: each server process (Redis apart) with its CPU per second and memory.
    expect(Object.keys(s.idle.system.cpuMsPerSec).sort()).toEqual(["api-1", "api-2", "lb-1", "worker-1", "worker-2"]);
    expect(s.idle.system.rssMiB["api-1"]).toBeGreaterThan(0);
    expect(s.echo.bareLb).toMatchObject({ keystrokes: 2 * r.settings.echo.pairs, errors: [] });
    expect(s.echo.bareLb.cpuUsPerKey).toHaveProperty("lb");
    expect(s.echo.system.cpuUsPerKey).toHaveProperty("api");
    expect(s.echo.system.cpuUsPerKey).toHaveProperty("worker");
    expect(s.throughput.system.memory).toHaveProperty("redis.used_memory");
    expect(s.echo.ratio.us.p50).toEqual(expect.any(Number));
    expect(r.verdicts.length).toBeGreaterThan(10);
    for (const v of r.verdicts) expect(v).toMatchObject({ id: expect.any(String), limit: expect.any(Number), met: expect.any(Boolean) });

    const md = readFileSync(join(out, "latest.md"), "utf8");
    expect(md).toContain("| figure | system | bare bridge | ratio | target |");
    expect(md).toContain("echo p50");
    expect(md).toContain("bare bridge behind the same haproxy");
    expect(md).toContain("## Failover storm");
    expect(md).toContain("## Idle");
    expect(md).toContain(String(r.machine.cpu));
  }, 240_000);
});
