/**
 * The AWS Terminal path through the local fakes (test/aws): native tunnel against
 * aws-cli mode in the same run, same instance, same sshd. For each mode it opens
 * SESSIONS shells one after another, as the worker does (terminalCommand, then ssh
 * in a PTY), keeps them all open, and measures:
 * - open: terminalCommand called -> the remote prompt in the PTY (p50/p99);
 * - worker CPU per open (this process: AWS calls, signing, key) and the session's
 *   own processes' CPU (ssh + ProxyCommand, utime+stime at the prompt);
 * - memory per session: RSS of the session's processes while all are open.
 * The fake aws-cli is a node script, not Python: aws-cli mode's figures here are a
 * lower bound for the real CLI (an interpreter start and botocore imports per open).
 *
 * Modes: aws-cli (the fake aws-cli as ProxyCommand), native/socat (the worker holds
 * the tunnel, socat relays), native/node (the same, eic-proxy.mjs relays).
 *
 *   node --expose-gc --import tsx bench/aws-tunnel.ts [--sessions 10]
 */
import { readFileSync } from "node:fs";
import { spawn as ptySpawn, type IPty } from "node-pty";
import { createAwsProvider } from "../apps/terminal-worker/src/providers/aws/provider.ts";
import type { WorkspaceRow } from "../apps/terminal-worker/src/providers/types.ts";
import { descendants } from "../apps/terminal-worker/src/terminal/kill-tree.ts";
import { startAwsHarness } from "../test/aws/harness.ts";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const SESSIONS = Math.min(19, Math.max(1, arg("sessions", 10)));
const TICK = 100 / 1000; // clock ticks per ms on Linux (USER_HZ 100)

function procStat(pid: number): { cpuMs: number; rssKb: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const cpuMs = (Number(f[11]) + Number(f[12])) / TICK;
    const rss = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return { cpuMs, rssKb: rss ? Number(rss[1]) : 0 };
  } catch {
    return { cpuMs: 0, rssKb: 0 };
  }
}
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? 0;
};

const h = await startAwsHarness({ tunnel: "aws-cli" });
const results: Record<string, { openP50: number; openP99: number; workerCpuMs: number; sessionCpuMs: number; rssMb: number; workerMbPerSession: number; procs: number }> = {};
const MODES = [
  { name: "aws-cli", opts: { tunnel: "aws-cli" as const } },
  { name: "native/socat", opts: { tunnel: "native" as const } },
  { name: "native/node", opts: { tunnel: "native" as const, relay: "node" as const } },
];
const gc = (globalThis as { gc?: () => void }).gc;
try {
  const setup = createAwsProvider(h.options());
  const ws = { id: "0b5e0b5e-0000-4000-8000-00000000be4c", name: "bench", runtime: "hermes", tier: 1, status: "provisioning", provider: "aws", instanceId: null } as unknown as WorkspaceRow;
  const { instanceId } = await setup.create(ws, { recordInstanceId: async () => {}, requestId: "bench-aws" });
  setup.close();
  for (const { name: mode, opts } of MODES) {
    const provider = createAwsProvider(h.options(opts));
    gc?.();
    let rss0 = 0;
    const opens: number[] = [];
    const workerCpu: number[] = [];
    const sessionCpu: number[] = [];
    const ptys: IPty[] = [];
    // One warm-up open (SDK clients, DNS, first key push) is not counted.
    for (let n = 0; n <= SESSIONS; n++) {
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      const cmd = await provider.terminalCommand({ sessionId: `bench-${mode}-${n}`, workspaceId: ws.id, orgId: "org", instanceId: instanceId!, cols: 80, rows: 24 });
      const pty = ptySpawn(cmd.file, cmd.args, { name: "xterm-256color", cols: 80, rows: 24, env: cmd.env, cwd: cmd.cwd });
      let out = "";
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`${mode}: no prompt: ${JSON.stringify(out.slice(-300))}`)), 20_000);
        pty.onData((d) => {
          out += d;
          if (/root@ws-[0-9a-f-]{12}:.*# $/.test(out)) {
            clearTimeout(t);
            resolve();
          }
        });
      });
      const ms = performance.now() - t0;
      const c = process.cpuUsage(c0);
      const tree = [pty.pid, ...descendants(pty.pid)];
      if (n > 0) {
        opens.push(ms);
        workerCpu.push((c.user + c.system) / 1000);
        sessionCpu.push(tree.reduce((a, p) => a + procStat(p).cpuMs, 0));
      }
      ptys.push(pty);
      if (n === 0) {
        gc?.();
        rss0 = process.memoryUsage().rss;
      }
      (pty as IPty & { cleanup?: () => Promise<void> }).cleanup = cmd.cleanup;
    }
    gc?.();
    const workerMbPerSession = (process.memoryUsage().rss - rss0) / SESSIONS / (1024 * 1024);
    const trees = ptys.map((p) => [p.pid, ...descendants(p.pid)]);
    const rss = trees.map((t) => t.reduce((a, p) => a + procStat(p).rssKb, 0) / 1024);
    results[mode] = {
      openP50: pct(opens, 50),
      openP99: pct(opens, 99),
      workerCpuMs: pct(workerCpu, 50),
      sessionCpuMs: pct(sessionCpu, 50),
      rssMb: pct(rss, 50),
      workerMbPerSession,
      procs: trees[0]!.length,
    };
    for (const p of ptys) {
      const gone = new Promise((r) => p.onExit(r));
      p.write("exit\r");
      await gone;
      await (p as IPty & { cleanup?: () => Promise<void> }).cleanup?.();
    }
    provider.close();
  }
} finally {
  await h.close();
}
const f = (x: number) => x.toFixed(0);
process.stdout.write(`AWS Terminal path through the fakes, ${SESSIONS} sessions per mode (sequential opens, all held open)\n`);
process.stdout.write("mode           open p50  open p99  worker CPU/open  session CPU/open  session RSS  worker RSS/session  processes/session\n");
for (const [mode, r] of Object.entries(results)) {
  process.stdout.write(
    `${mode.padEnd(14)} ${f(r.openP50).padStart(5)} ms  ${f(r.openP99).padStart(5)} ms  ${f(r.workerCpuMs).padStart(10)} ms  ${f(r.sessionCpuMs).padStart(13)} ms  ${r.rssMb.toFixed(1).padStart(8)} MB  ${r.workerMbPerSession.toFixed(1).padStart(12)} MB  ${String(r.procs).padStart(10)}\n`,
  );
}
process.exit(0);
