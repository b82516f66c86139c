import { readFileSync, statSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, readyWorkspace, waitFor } from "../helpers/http.ts";
import { startStack, type Stack } from "../helpers/stack.ts";
import { buildCli, cliHome, PtyProc, runCli, runProcess } from "./harness.ts";

let stack: Stack;
let token: string;
let bin: string;
let cleanups: (() => void)[] = [];
let ws: string;

beforeAll(async () => {
  const [s, b] = await Promise.all([startStack(), buildCli()]);
  stack = s;
  bin = b.bin;
  cleanups.push(b.cleanup);
  token = (await stack.org("cli")).token;
  ws = await readyWorkspace(stack.url, token, "cli-shell");
});
afterAll(async () => {
  for (const c of cleanups) c();
  cleanups = [];
  await stack?.close();
});

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** A fresh home, logged in with the org token through MOLECULE_TOKEN. */
function home(): Record<string, string> {
  const h = cliHome();
  cleanups.push(h.cleanup);
  return h.env;
}
async function loggedIn(): Promise<Record<string, string>> {
  const env = home();
  const r = await runCli(bin, ["login", "--api", stack.url], { env: { ...env, MOLECULE_TOKEN: token } });
  expect(r.code, r.stderr).toBe(0);
  return env;
}

describe("molecule login", () => {
  it("asks for the token on the terminal without echoing it, and keeps it 0600 under XDG_CONFIG_HOME", async () => {
    const env = home();
    const p = new PtyProc(process.execPath, [bin, "login", "--api", stack.url], { env });
    await p.waitText(`Token for ${stack.url}: `);
    p.write(`${token}\r`);
    expect((await p.exited).exitCode).toBe(0);
    expect(p.text).not.toContain(token); // not echoed
    expect(p.text).toContain("Logged in");
    const file = join(env.XDG_CONFIG_HOME!, "molecule", "config.json");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(env.XDG_CONFIG_HOME!, "molecule")).mode & 0o777).toBe(0o700);
    const cfg = JSON.parse(readFileSync(file, "utf8"));
    expect(cfg).toEqual({ current: "default", profiles: { default: { api: stack.url, token } } });
    // And it is used: whoami checks it against the API.
    const who = await runCli(bin, ["whoami", "--json"], { env });
    expect(who.code, who.stderr).toBe(0);
    expect(JSON.parse(who.stdout)).toMatchObject({ profile: "default", api: stack.url, token_prefix: `${token.slice(0, 12)}…` });
  });

  it("takes the token from stdin, and keeps named profiles apart", async () => {
    const env = home();
    const other = (await stack.org("cli-other")).token;
    expect((await runCli(bin, ["login", "--api", stack.url], { env, input: `${token}\n` })).code).toBe(0);
    const r = await runCli(bin, ["login", "--api", `${stack.url}/`, "--profile", "other", "--with-token"], { env, input: other });
    expect(r.code, r.stderr).toBe(0);
    const list = JSON.parse((await runCli(bin, ["profiles", "--json"], { env })).stdout);
    expect(list.profiles.map((p: { name: string; current: boolean }) => [p.name, p.current])).toEqual([
      ["default", false],
      ["other", true],
    ]);
    // The other org sees none of the first org's workspaces; --profile picks the first again.
    expect(JSON.parse((await runCli(bin, ["ws", "list", "--json"], { env })).stdout).workspaces).toEqual([]);
    const mine = JSON.parse((await runCli(bin, ["--profile", "default", "ws", "list", "--json"], { env })).stdout).workspaces;
    expect(mine.map((w: { id: string }) => w.id)).toContain(ws);
    expect((await runCli(bin, ["profiles", "use", "default"], { env })).code).toBe(0);
    expect((await runCli(bin, ["logout"], { env })).code).toBe(0);
    const after = await runCli(bin, ["ws", "list"], { env });
    expect(after.code).toBe(1);
    expect(after.stderr).toMatch(/not logged in: run molecule login --api URL/);
  });

  it("a bad token: a clear message, exit 1, nothing stored", async () => {
    const env = home();
    const r = await runCli(bin, ["login", "--api", stack.url], { env, input: "mol_not-a-real-token-at-all\n" });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: invalid token .*log in again.*\(unauthorized\)\n$/);
    expect(() => statSync(join(env.XDG_CONFIG_HOME!, "molecule", "config.json"))).toThrow();
    const viaEnv = await runCli(bin, ["--api", stack.url, "ws", "list", "--json"], { env: { ...env, MOLECULE_TOKEN: "mol_nope-nope-nope" } });
    expect(viaEnv.code).toBe(1);
    expect(JSON.parse(viaEnv.stderr).error.code).toBe("unauthorized");
    const port = await closedPort();
    const noApi = await runCli(bin, ["ws", "list"], { env: { ...env, MOLECULE_API: `http://127.0.0.1:${port}`, MOLECULE_TOKEN: token } });
    expect(noApi.code).toBe(1);
    expect(noApi.stderr).toBe(`error: cannot reach the API at http://127.0.0.1:${port}: ECONNREFUSED (network)\n`);
  });
});

describe("molecule workspaces", () => {
  it("create --wait shows the provisioning steps in a terminal and returns once ready", async () => {
    const env = await loggedIn();
    const p = new PtyProc(process.execPath, [bin, "ws", "create", "made-by-cli", "--runtime", "hermes", "--tier", "1", "--wait"], { env });
    expect((await p.exited).exitCode).toBe(0);
    expect(p.text).toMatch(/Queued/);
    expect(p.text).toMatch(/Creating the sandbox/);
    expect(p.text).toMatch(/Ready in \d+\.\ds/);
    expect(p.text).toMatch(/status: +ready/);
    const id = /id: +([0-9a-f-]{36})/.exec(p.text)?.[1];
    expect((await call(stack.url, "GET", `/workspaces/${id}`, { token })).body).toMatchObject({ name: "made-by-cli", status: "ready", runtime: "hermes", tier: 1 });
  });

  it("--json on list, get, create, rm; names resolve; API errors show their code; usage errors exit 2", async () => {
    const env = await loggedIn();
    const created = await runCli(bin, ["ws", "create", "json-ws", "--wait", "--json"], { env });
    expect(created.code, created.stderr).toBe(0);
    const w = JSON.parse(created.stdout);
    expect(w).toMatchObject({ name: "json-ws", status: "ready" });
    const got = JSON.parse((await runCli(bin, ["ws", "get", "json-ws", "--json"], { env })).stdout);
    expect(got.id).toBe(w.id);
    const list = JSON.parse((await runCli(bin, ["workspaces", "list", "--json"], { env })).stdout);
    expect(list.workspaces.map((x: { id: string }) => x.id)).toContain(w.id);
    // A lifecycle conflict comes back with the API's code and message.
    await runCli(bin, ["ws", "rm", w.id], { env });
    const restart = await runCli(bin, ["ws", "restart", w.id], { env });
    expect(restart.code).toBe(1);
    expect(restart.stderr).toMatch(/^error: cannot restart a workspace that is remov(ing|ed).*\(conflict\)\n$/);
    const missing = await runCli(bin, ["ws", "get", "00000000-0000-4000-8000-000000000000"], { env });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/\(not_found\)/);
    const byName = await runCli(bin, ["ws", "get", "no-such-name"], { env });
    expect(byName.code).toBe(1);
    expect(byName.stderr).toMatch(/no workspace named "no-such-name"/);
    for (const args of [["ws", "create"], ["ws", "create", "x", "--tier", "9"], ["ws", "create", "x", "--runtime", "nope"], ["bogus"], ["ssh"]]) {
      const r = await runCli(bin, args, { env });
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(/error|missing|unknown/);
    }
    const bad = await runCli(bin, ["ws", "create", "bad\u202ename", "--json"], { env });
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stderr).error).toMatchObject({ code: "validation_failed" });
  });

  it("--help and --version need no network, no config and no database", async () => {
    const env = { PATH: process.env.PATH ?? "", HOME: "/nonexistent" };
    const v = await runCli(bin, ["--version"], { env });
    expect(v).toMatchObject({ code: 0, stdout: `${JSON.parse(readFileSync(join(__dirname, "../../apps/cli/package.json"), "utf8")).version}\n` });
    for (const args of [["--help"], ["ws", "--help"], ["ssh", "--help"]]) {
      const r = await runCli(bin, args, { env });
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/Usage: molecule/);
    }
    const admin = await runProcess(process.execPath, ["--import", "tsx", join(__dirname, "../../scripts/molecule.ts"), "--help"], {
      env: { PATH: process.env.PATH, DATABASE_URL: "postgres://nobody@127.0.0.1:1/none" },
      cwd: join(__dirname, "../.."),
    });
    expect(admin.code).toBe(0);
    expect(admin.stdout).toMatch(/org create <name>/);
  });
});

describe("molecule ssh", () => {
  it("types into the shell; the size follows resizes; Ctrl-C reaches the remote; TERM passes; exit 3 is our exit code; the terminal is restored", async () => {
    const env = await loggedIn();
    // bash around the CLI, so the local terminal's mode can be read after it exits.
    const p = new PtyProc("/bin/bash", ["--norc", "--noprofile", "-c", `TERM=screen-256color ${process.execPath} ${bin} ssh cli-shell; echo "rc=$?"; stty -a`], { env, cols: 100, rows: 30 });
    await p.waitText(/# $/m, 20_000);
    expect((await p.run("stty size")).trim()).toBe("30 100");
    expect((await p.run("echo $MOLECULE_WS_ID")).trim()).toBe(ws);
    // The local TERM reaches the remote shell.
    expect((await p.run("echo $TERM")).trim()).toBe("screen-256color");
    p.p.resize(120, 40);
    await waitFor(async () => (await p.run("stty size")).trim() === "40 120", 10_000);
    // Ctrl-C reaches the remote sleep (the local CLI does not die of it).
    const from = p.text.length;
    // The marker comes from the process that becomes the sleep: once it shows, that process is
    // the foreground job, so the SIGINT lands on it (not on bash between two commands).
    p.write("sh -c 'echo sleeping-$((1)); exec sleep 30'; echo slept-$((1+1))\r");
    await p.waitText(/^sleeping-1\r$/m, 10_000, from);
    p.write("\x03");
    await p.waitText("^C", 5000, from);
    expect((await p.run("echo alive")).trim()).toBe("alive");
    expect(p.text.slice(from)).not.toMatch(/slept-2/);
    p.write("exit 3\r");
    await p.waitText(/rc=3/, 10_000);
    await p.exited;
    // Raw mode undone: the local terminal is canonical and echoing again.
    const after = p.text.slice(p.text.indexOf("rc=3"));
    expect(after).toMatch(/(^|\s)icanon(\s|$)/m);
    expect(after).toMatch(/(^|\s)echo(\s|$)/m);
    // The audit shows the session ended by the shell's exit.
    const rows = (await call(stack.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token })).body.sessions;
    expect(rows[0]).toMatchObject({ exit_code: 3 });
  });

  it("~? lists the escapes, ~. disconnects (exit 130) and the session ends", async () => {
    const env = await loggedIn();
    const p = new PtyProc(process.execPath, [bin, "ssh", ws], { env });
    await p.waitText(/# $/m, 20_000);
    p.write("\r~?");
    await p.waitText("~.   - disconnect");
    p.write("\r~.");
    expect((await p.exited).exitCode).toBe(130);
    await waitFor(async () => {
      const s = (await call(stack.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token })).body.sessions[0];
      return s.closed_at !== null && s.close_reason === "client_closed";
    }, 10_000);
  });

  it("sessions lists who opened shells, newest first", async () => {
    const env = await loggedIn();
    const r = await runCli(bin, ["sessions", "cli-shell", "--json"], { env });
    expect(r.code, r.stderr).toBe(0);
    const rows = JSON.parse(r.stdout).sessions;
    expect(rows.length).toBeGreaterThanOrEqual(2);
    expect(rows[0].user_agent).toMatch(/^molecule-cli\//);
    const table = await runCli(bin, ["sessions", "cli-shell"], { env });
    expect(table.stdout.split("\n")[0]).toMatch(/^ID +OPENED +DURATION +END +EXIT/);
  });

  it("refuses a workspace that is not ready, and a bad token, with the API's message", async () => {
    const env = await loggedIn();
    const r = await runCli(bin, ["ssh", ws], { env: { ...env, MOLECULE_TOKEN: "mol_bad-bad-bad-bad" } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/invalid token.*\(unauthorized\)/);
    const gone = JSON.parse((await runCli(bin, ["ws", "create", "short-lived", "--wait", "--json"], { env })).stdout);
    expect((await runCli(bin, ["ws", "rm", gone.id], { env })).code).toBe(0);
    const refused = await runCli(bin, ["ssh", gone.id], { env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^error: workspace short-lived is remov(ing|ed), not ready \(not_ready\)\n$/);
  });
});

describe("completion", () => {
  it("bash: commands, subcommands and workspace names", async () => {
    const env = await loggedIn();
    const script = `eval "$(${process.execPath} ${bin} completion bash)"
molecule() { ${process.execPath} ${bin} "$@"; }
COMP_WORDS=(molecule w); COMP_CWORD=1; _molecule; echo "top: \${COMPREPLY[*]}"
COMP_WORDS=(molecule ws c); COMP_CWORD=2; _molecule; echo "ws: \${COMPREPLY[*]}"
COMP_WORDS=(molecule ssh cli-); COMP_CWORD=2; _molecule; echo "ssh: \${COMPREPLY[*]}"`;
    const r = await runProcess("/bin/bash", ["--norc", "-c", script], { env });
    expect(r.stdout).toMatch(/^top: whoami workspaces ws$/m);
    expect(r.stdout).toMatch(/^ws: create$/m);
    expect(r.stdout).toMatch(/^ssh: cli-shell$/m);
    const zsh = await runCli(bin, ["completion", "zsh"], { env });
    expect(zsh.stdout).toMatch(/^#compdef molecule/);
    expect((await runCli(bin, ["completion", "fish"], { env })).code).toBe(2);
  });
});
