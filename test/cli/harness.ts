import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pty from "node-pty";
import { ROOT } from "../../scripts/processes.ts";

/** Bundles the CLI (apps/cli/build.mjs) into a directory of this test's own; returns its bin. */
export async function buildCli(): Promise<{ bin: string; dir: string; cleanup(): void }> {
  const dir = mkdtempSync(join(tmpdir(), "molecule-cli-build-"));
  const r = await runProcess(process.execPath, [join(ROOT, "apps/cli/build.mjs"), dir], { cwd: ROOT, env: { PATH: process.env.PATH } });
  if (r.code !== 0) throw new Error(`cli build failed: ${r.stderr}`);
  return { bin: join(dir, "molecule.js"), dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A home and XDG config directory of the test's own, and nothing of the runner's environment. */
export function cliHome(): { home: string; env: Record<string, string>; cleanup(): void } {
  const home = mkdtempSync(join(tmpdir(), "molecule-cli-home-"));
  return {
    home,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, XDG_CONFIG_HOME: join(home, ".config"), TERM: "xterm-256color", LANG: "C.UTF-8" },
    cleanup: () => rmSync(home, { recursive: true, force: true }),
  };
}

export interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

export function runProcess(
  cmd: string,
  args: string[],
  o: { env: Record<string, string | undefined>; input?: string | Buffer; cwd?: string; timeoutMs?: number },
): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { env: o.env, cwd: o.cwd ?? tmpdir(), stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    c.stdout.on("data", (b: Buffer) => out.push(b));
    c.stderr.on("data", (b: Buffer) => err.push(b));
    const t = setTimeout(() => c.kill("SIGKILL"), o.timeoutMs ?? 60_000);
    c.on("error", reject);
    c.on("close", (code, signal) => {
      clearTimeout(t);
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, signal, stdout: stdoutBytes.toString("utf8"), stderr: Buffer.concat(err).toString("utf8"), stdoutBytes });
    });
    c.stdin.on("error", () => {}); // a CLI that exits before reading all of it
    if (o.input !== undefined) c.stdin.end(o.input);
    else c.stdin.end();
  });
}

/** The CLI bundle under plain node, stdin/stdout/stderr as pipes. */
export function runCli(bin: string, args: string[], o: { env: Record<string, string | undefined>; input?: string | Buffer; timeoutMs?: number }): Promise<Ran> {
  return runProcess(process.execPath, [bin, ...args], o);
}

/** A command in a real PTY (node-pty), as a user's terminal would run it. */
export class PtyProc {
  readonly p: pty.IPty;
  private buf = "";
  readonly exited: Promise<{ exitCode: number; signal?: number }>;
  exit: { exitCode: number; signal?: number } | null = null;
  private waiters: (() => void)[] = [];

  constructor(file: string, args: string[], o: { env: Record<string, string>; cols?: number; rows?: number; cwd?: string }) {
    this.p = pty.spawn(file, args, { name: "xterm-256color", cols: o.cols ?? 100, rows: o.rows ?? 30, cwd: o.cwd ?? tmpdir(), env: o.env });
    this.p.onData((d) => {
      this.buf += d;
      this.notify();
    });
    this.exited = new Promise((resolve) =>
      this.p.onExit((e) => {
        this.exit = e;
        this.notify();
        resolve(e);
      }),
    );
  }

  get text(): string {
    return this.buf;
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Waits until the output after `from` matches; throws with the tail after `ms`. */
  async waitText(match: string | RegExp, ms = 15_000, from = 0): Promise<string> {
    const deadline = performance.now() + ms;
    for (;;) {
      const t = this.buf.slice(from);
      const m = typeof match === "string" ? (t.includes(match) ? match : null) : (match.exec(t)?.[0] ?? null);
      if (m !== null) return m;
      if (performance.now() > deadline) throw new Error(`timed out waiting for ${String(match)}; exit=${JSON.stringify(this.exit)} tail=${JSON.stringify(this.buf.slice(-600))}`);
      if (this.exit) throw new Error(`exited (${JSON.stringify(this.exit)}) while waiting for ${String(match)}; tail=${JSON.stringify(this.buf.slice(-600))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(200, Math.max(1, deadline - performance.now())));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  write(s: string): void {
    this.p.write(s);
  }

  /**
   * Runs a command in the remote shell and resolves with what it printed between two markers
   * built by the shell itself (so the echo of the command line never matches).
   */
  async run(cmd: string, ms = 15_000): Promise<string> {
    const tag = Math.random().toString(36).slice(2, 8);
    const from = this.buf.length;
    this.write(`printf '%s\\n' "<<$((1))${tag}"; ${cmd}; printf '%s\\n' "$((2))${tag}>>"\r`);
    const re = new RegExp(`<<1${tag}\\r?\\n([\\s\\S]*?)2${tag}>>`);
    await this.waitText(re, ms, from);
    return (re.exec(this.buf.slice(from))?.[1] ?? "").replace(/\r\n/g, "\n");
  }

  kill(signal = "SIGKILL"): void {
    if (!this.exit) this.p.kill(signal);
  }
}
