import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/processes.ts";
import { readyWorkspace } from "../helpers/http.ts";
import { startStack, type Stack } from "../helpers/stack.ts";
import { buildCli, runProcess } from "./harness.ts";

let stack: Stack;
let token: string;
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  await stack?.close();
});
beforeAll(async () => {
  stack = await startStack();
  token = (await stack.org("pack")).token;
});

function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

/** Only node's own directory on PATH: nothing of the repository (no tsx, no pnpm). */
const plainPath = `${dirname(process.execPath)}:/usr/bin:/bin`;

describe("the packed CLI", () => {
  it("pnpm pack makes a tarball that installs and runs on plain Node 20 outside the repository, no tsx", async () => {
    const out = tmp("molecule-pack-");
    const pack = await runProcess("pnpm", ["pack", "--pack-destination", out], { env: { PATH: process.env.PATH, HOME: process.env.HOME }, cwd: join(ROOT, "apps/cli"), timeoutMs: 120_000 });
    expect(pack.code, pack.stderr + pack.stdout).toBe(0);
    const tgz = readdirSync(out).find((f) => f.endsWith(".tgz"));
    expect(tgz).toBeDefined();
    const prefix = tmp("molecule-install-");
    const home = tmp("molecule-home-");
    const inst = await runProcess("npm", ["install", "--global", "--prefix", prefix, "--offline", "--no-audit", "--no-fund", join(out, tgz!)], {
      env: { PATH: plainPath, HOME: home, npm_config_cache: join(home, ".npm") },
      cwd: home,
      timeoutMs: 120_000,
    });
    expect(inst.code, inst.stderr).toBe(0);
    const installed = join(prefix, "lib/node_modules/@molecule/cli");
    const js = readdirSync(join(installed, "dist/chunks")).map((f) => readFileSync(join(installed, "dist/chunks", f), "utf8"));
    for (const text of js) expect(text).not.toMatch(/from ["']tsx|@molecule\/shared/);
    expect(JSON.parse(readFileSync(join(installed, "package.json"), "utf8")).dependencies ?? {}).toEqual({});
    const env = { PATH: plainPath, HOME: home, XDG_CONFIG_HOME: join(home, "cfg"), MOLECULE_TOKEN: token };
    const bin = join(prefix, "bin/molecule");
    const v = await runProcess(bin, ["--version"], { env, cwd: home });
    expect(v.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
    const ws = await readyWorkspace(stack.url, token, "packed");
    const list = await runProcess(bin, ["--api", stack.url, "ws", "list", "--json"], { env, cwd: home });
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout).workspaces.map((w: { id: string }) => w.id)).toContain(ws);
    const ex = await runProcess(bin, ["--api", stack.url, "exec", ws, "--", "echo", "from-the-tarball"], { env, cwd: home });
    expect(ex).toMatchObject({ code: 0, stdout: "from-the-tarball\n" });
    // And admin, which needs the repository and its database, says so instead of failing oddly.
    const admin = await runProcess(bin, ["admin", "org", "create", "x"], { env, cwd: home });
    expect(admin.code).toBe(2);
    expect(admin.stderr).toMatch(/server checkout/);
  }, 240_000);

  it("pnpm molecule runs it in the repository", async () => {
    const r = await runProcess("pnpm", ["-s", "molecule", "--version"], { env: { PATH: process.env.PATH, HOME: process.env.HOME }, cwd: ROOT });
    expect(r.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });

  it("molecule --version answers in under 150 ms (no heavy imports at start)", async () => {
    const b = await buildCli();
    dirs.push(b.dir);
    // Alternating, and the fastest of each: a busy test machine slows some runs, not what a start costs.
    // What the CLI adds is compared in CPU time (bash's `time`: user + system of the process), which
    // other load on the machine hardly changes; wall time only says the absolute figure.
    const runs = { bare: [] as number[], cli: [] as number[], bareCpu: [] as number[], cliCpu: [] as number[] };
    const once = async (args: string[], wall: number[], cpu: number[]) => {
      const t0 = performance.now();
      const r = await runProcess("/bin/bash", ["-c", 'TIMEFORMAT="%3U %3S"; { time "$0" "$@" >/dev/null; } 2>&1', process.execPath, ...args], { env: { PATH: plainPath } });
      wall.push(performance.now() - t0);
      expect(r.code).toBe(0);
      const [user, sys] = r.stdout.trim().split(" ").map(Number);
      cpu.push(((user ?? Number.NaN) + (sys ?? Number.NaN)) * 1000);
    };
    for (let i = 0; i < 9; i++) {
      await once(["-e", ""], runs.bare, runs.bareCpu);
      await once([b.bin, "--version"], runs.cli, runs.cliCpu);
    }
    const bare = Math.min(...runs.bare);
    const cli = Math.min(...runs.cli);
    const added = Math.min(...runs.cliCpu) - Math.min(...runs.bareCpu);
    process.stderr.write(`molecule --version fastest ${cli.toFixed(1)} ms (bare node ${bare.toFixed(1)} ms); CPU added ${added.toFixed(1)} ms\n`);
    // What the CLI adds to node's own start is what it controls; the absolute figure holds unless the machine is saturated.
    expect(added).toBeLessThan(40);
    if (bare < 100) expect(cli).toBeLessThan(150);
  });
});
