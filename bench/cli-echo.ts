/**
 * `molecule ssh` echo against the bench client on the same system (`pnpm bench --only cli`, or
 * part of the full run): the CLI runs in a real PTY (node-pty) as a user's terminal would run it,
 * the bench client speaks protocol v1 in-process; keystroke pairs (a byte, then DEL) alternate
 * between the two in blocks, so the machine's drift hits both alike. Target: the CLI's p50 within
 * 10% of the client's.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import * as pty from "node-pty";
import { writeKeystrokesDirectly } from "../apps/terminal-worker/src/terminal/pty-direct-write.ts";
import { ROOT } from "../scripts/processes.ts";
import { BenchClient } from "./client.ts";
import { percentiles } from "./measure.ts";
import type { Target } from "./system.ts";

const KEY = "a";
/** Raw mode and no output processing, as molecule ssh sets them; then every byte straight back. */
const PTY_ECHO = "process.stdin.setRawMode(true); require('child_process').spawnSync('stty', ['-opost'], { stdio: ['inherit', 'ignore', 'ignore'] }); process.stdin.on('data', (d) => process.stdout.write(d));";
const DEL = "\x7f";

/** Something that echoes keystrokes: how many bytes it has received, and a way to send one. */
interface Echoer {
  received(): number;
  send(s: string): void;
  waitBytes(n: number, ms: number): Promise<void>;
}

class CliEchoer implements Echoer {
  private n = 0;
  private waiters: (() => void)[] = [];
  readonly p: pty.IPty;

  constructor(args: string[], token: string) {
    const home = mkdtempSync(join(os.tmpdir(), "molecule-bench-cli-"));
    this.home = home;
    this.p = pty.spawn(process.execPath, args, {
      name: "xterm-256color",
      cols: 120,
      rows: 30,
      cwd: home,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, XDG_CONFIG_HOME: join(home, ".config"), MOLECULE_TOKEN: token, TERM: "xterm-256color" },
    });
    // As a terminal emulator does: keystrokes straight to the master, not through node-pty's
    // thread-pool write (which would add a thread hop to the CLI's side only).
    writeKeystrokesDirectly(this.p);
    this.p.onData((d) => {
      this.n += Buffer.byteLength(d);
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    });
  }
  readonly home: string;

  received(): number {
    return this.n;
  }
  send(s: string): void {
    this.p.write(s);
  }
  async waitBytes(n: number, ms: number): Promise<void> {
    const deadline = performance.now() + ms;
    while (this.n < n) {
      if (performance.now() > deadline) throw new Error(`molecule ssh: no echo within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
  close(): void {
    this.p.kill("SIGTERM");
    rmSync(this.home, { recursive: true, force: true });
  }
}

function clientEchoer(c: BenchClient): Echoer {
  return { received: () => c.received, send: (s) => c.send(Buffer.from(s)), waitBytes: (n, ms) => c.waitBytes(n, ms) };
}

async function settle(e: Echoer, quietMs: number, maxMs = 20_000): Promise<void> {
  const deadline = performance.now() + maxMs;
  let last = e.received();
  let since = performance.now();
  while (performance.now() - since < quietMs && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
    if (e.received() !== last) {
      last = e.received();
      since = performance.now();
    }
  }
}

async function learnDelEcho(e: Echoer): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const r0 = e.received();
    e.send(KEY);
    await e.waitBytes(r0 + 1, 30_000);
    await settle(e, 60);
    const r = e.received();
    e.send(DEL);
    await e.waitBytes(r + 1, 30_000);
    await settle(e, 60);
    best = Math.min(best, e.received() - r);
  }
  return best;
}

async function pair(e: Echoer, delEcho: number): Promise<[number, number]> {
  let r = e.received();
  let t0 = performance.now();
  e.send(KEY);
  await e.waitBytes(r + 1, 15_000);
  const a = (performance.now() - t0) * 1000;
  r = e.received();
  t0 = performance.now();
  e.send(DEL);
  await e.waitBytes(r + delEcho, 15_000);
  return [a, (performance.now() - t0) * 1000];
}

/** Builds the CLI bundle (apps/cli/build.mjs) into a directory of its own; returns its bin and a cleanup. */
export function buildCliBundle(): { bin: string; cleanup(): void } {
  const dir = mkdtempSync(join(os.tmpdir(), "molecule-bench-cli-build-"));
  const r = spawnSync(process.execPath, [join(ROOT, "apps/cli/build.mjs"), dir], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`cli build failed: ${r.stderr}`);
  return { bin: join(dir, "molecule.js"), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function scenarioCliEcho(system: Target, o: { pairs: number; blocks: number; warmup: number }) {
  const u = new URL(system.terminalUrl);
  const m = /^\/workspaces\/([^/]+)\/terminal$/.exec(u.pathname);
  if (!m?.[1] || !system.token) throw new Error(`not a workspace terminal URL with a token: ${system.terminalUrl}`);
  const api = `${u.protocol === "wss:" ? "https:" : "http:"}//${u.host}`;
  const build = buildCliBundle();
  const client = new BenchClient(system.terminalUrl, { token: system.token, cols: 120 });
  const cli = new CliEchoer([build.bin, "--api", api, "ssh", m[1]], system.token);
  // The local terminal's own hop, which any terminal client pays and the in-process client does
  // not: a node process in the same kind of PTY (raw, no output processing) echoing its input.
  const hop = new CliEchoer(["-e", PTY_ECHO], "");
  try {
    const targets: [string, Echoer][] = [
      ["client", clientEchoer(client)],
      ["cli", cli],
      ["ptyHop", hop],
    ];
    const rtt: Record<string, number[]> = { client: [], cli: [], ptyHop: [] };
    const del: Record<string, number> = {};
    for (const [name, e] of targets) {
      // The shells draw a prompt first; the bare echo process draws nothing.
      if (name !== "ptyHop") await e.waitBytes(1, 20_000);
      await settle(e, 150);
      del[name] = await learnDelEcho(e);
      for (let i = 0; i < o.warmup; i++) await pair(e, del[name]!);
    }
    const perBlock = Math.max(1, Math.round(o.pairs / o.blocks));
    for (let b = 0; b < o.blocks; b++) {
      for (const [name, e] of targets) for (let k = 0; k < perBlock; k++) rtt[name]!.push(...(await pair(e, del[name]!)));
    }
    const c = percentiles(rtt.client!);
    const l = percentiles(rtt.cli!);
    const h = percentiles(rtt.ptyHop!);
    const r2 = (v: number) => Math.round(v * 100) / 100;
    return {
      client: { us: c },
      cli: { us: l },
      ptyHop: { us: h },
      ratioP50: r2(l.p50 / c.p50),
      /** The CLI with the local terminal's hop taken out: what the CLI itself adds. */
      ratioP50WithoutPtyHop: r2((l.p50 - h.p50) / c.p50),
      withinTarget: l.p50 <= c.p50 * 1.1,
    };
  } finally {
    await client.close();
    cli.close();
    hop.close();
    build.cleanup();
  }
}
