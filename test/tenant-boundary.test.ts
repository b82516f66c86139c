import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sessionKeys } from "@molecule/shared";
import { bwrapAvailable } from "../apps/terminal-worker/src/providers/index.ts";
import { DEFAULT_UID_RANGE } from "../apps/terminal-worker/src/providers/local.ts";
import { readyWorkspace, waitFor } from "./helpers/http.ts";
import { startStack, type Stack } from "./helpers/stack.ts";
import { hostPidsOfSession, processesOf, statusField } from "./helpers/procs.ts";
import { openShell, type TermClient } from "./helpers/term-client.ts";

/**
 * Issue 11: a workspace shell is a tenant boundary. Every attack here is typed
 * into a real local-provider shell (bubblewrap, as the worker runs it) and must
 * fail; each worked before the sandbox was rebuilt. The sandbox root and a state
 * dir live under /var/tmp, outside /root, as an installed platform's would.
 */
const usable = bwrapAvailable();
if (!usable && process.env.CI === "true") throw new Error("bubblewrap is not usable here: the tenant boundary cannot be tested (CI must have it)");
const asRoot = process.getuid?.() === 0;
const PIDS = 64;
const MEMORY = 160 * 1024 * 1024;
const marker = `MARK${randomBytes(6).toString("hex")}`;

let s: Stack;
let token: string;
let otherToken: string;
let base: string;
let root: string;
let stateDir: string;
let wsA: string;
let wsB: string;
let a: TermClient;
let b: TermClient;

// In CI (root, the tools installed by ensure-deps) nothing is skipped: a missing tool fails the run.
describe.skipIf(!usable && process.env.CI !== "true")("tenant boundary (local provider)", () => {
  beforeAll(async () => {
    base = mkdtempSync("/var/tmp/molecule-tb-");
    chmodSync(base, 0o755);
    root = join(base, "sandboxes");
    stateDir = join(base, "state");
    mkdirSync(stateDir, { mode: 0o755 });
    writeFileSync(join(stateDir, "dev-token"), `mol_${marker}\n`, { mode: 0o644 });
    s = await startStack({ local: { root, limits: { pids: PIDS, memoryBytes: MEMORY } } });
    token = (await s.org("tenant")).token;
    otherToken = (await s.org("victim")).token;
    wsA = await readyWorkspace(s.url, token, "attacker");
    wsB = await readyWorkspace(s.url, otherToken, "victim");
    // The attacker's shell is its workspace's second, so it comes from a spare (terminal/spare-shells.ts):
    // every attack below runs in a spare-started shell (a) and some in a shell spawned at its open (b).
    const firstA = await openShell(s.wsUrl, wsA, { token });
    await firstA.waitText(/[#$] $/);
    await waitFor(async () => s.worker!.terminal!.spares.stats().ready >= 1, 10_000);
    await firstA.close();
    const taken = s.worker!.terminal!.spares.stats().taken;
    [a, b] = await Promise.all([openShell(s.wsUrl, wsA, { token }), openShell(s.wsUrl, wsB, { token: otherToken })]);
    await a.waitText(/[#$] $/);
    expect(s.worker!.terminal!.spares.stats().taken).toBe(taken + 1);
    // The victim's secret, written by its own shell.
    await b.run(`echo ${marker}-secret > /secret.txt`);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await s?.close();
    rmSync(base, { recursive: true, force: true });
  });

  it("keeps the user journey: whoami is root, df -h / works, MOLECULE_WS_ID is set", async () => {
    expect(await a.run("whoami")).toBe("root\n");
    expect(await a.run("df -h /")).toMatch(/Filesystem[\s\S]*\/\n/);
    expect((await a.run("echo $MOLECULE_WS_ID")).trim()).toBe(wsA);
    expect((await a.run("pwd")).trim()).toBe("/root");
    // A second shell in the same workspace (its / already has the mount points) opens too.
    const again = await openShell(s.wsUrl, wsA, { token });
    expect((await again.run("cat /root/../.molecule-workspace")).trim()).toBe(wsA);
    await again.close();
  });

  it("reaches no host service over the network: Redis, PostgreSQL, the API, link-local", async () => {
    const port = new URL(s.url).port;
    for (const target of ["127.0.0.1/6379", "127.0.0.1/5432", `127.0.0.1/${port}`, "169.254.169.254/80", "10.0.0.1/80"]) {
      const out = await a.run(`timeout 3 bash -c 'exec 3<>/dev/tcp/${target} && echo OPEN' 2>&1; echo rc=$?`);
      expect(out, target).not.toContain("OPEN");
      expect(out, target).toMatch(/Connection refused|Network is unreachable|rc=1/);
    }
    // Its own network namespace: loopback only.
    const ifaces = (await a.run("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")).trim().split("\n");
    expect(ifaces).toEqual(["lo"]);
  });

  it("cannot type into another organisation's shell through Redis", async () => {
    const victim = sessionKeys(s.ns, b.hello!.session).in;
    const payload = `iecho ${marker}-PWNED\r`;
    const out = await a.run(`timeout 5 redis-cli -h 127.0.0.1 -p 6379 publish '${victim}' '${payload}' 2>&1; echo rc=$?`);
    expect(out).toMatch(/Could not connect|Connection refused/);
    // The victim's shell is alive and never ran it.
    expect((await b.run("echo alive")).trim()).toBe("alive");
    expect(b.text()).not.toContain(`${marker}-PWNED\r\n`);
    expect(existsSync(join(root, wsB, "root", "pwned.txt"))).toBe(false);
  });

  it("sees nothing of other workspaces, the state dir, the repository or host secrets at any path", async () => {
    const secretHostPath = join(root, wsB, "secret.txt");
    expect(readFileSync(secretHostPath, "utf8")).toContain(marker); // it is there on the host
    for (const p of [secretHostPath, join(stateDir, "dev-token"), join(process.cwd(), "package.json"), "/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/root/.ssh"]) {
      const out = await a.run(`cat ${p} 2>&1 | head -c 200; echo`);
      expect(out, p).toMatch(/No such file or directory/);
    }
    for (const p of [root, base, "/home", "/srv", "/var", process.cwd()]) expect(await a.run(`ls -A ${p} 2>&1`), p).toMatch(/No such file or directory/);
    // Anywhere at all (system dirs, which hold no tenant data, aside).
    const found = await a.run(`grep -rl -D skip ${marker} / --exclude-dir=usr --exclude-dir=proc --exclude-dir=sys 2>/dev/null; echo end`);
    expect(found.trim()).toBe("end");
    const etc = (await a.run("ls -A /etc")).split(/\s+/);
    for (const f of ["shadow", "gshadow", "sudoers", "ssh", "subuid", "machine-id"]) expect(etc).not.toContain(f);
    expect(await a.run("grep -c . /etc/passwd")).toBe("2\n"); // root and nobody, not the host's users
  });

  it("has a minimal /dev, a private /dev/shm and no host /run (no docker.sock)", async () => {
    const devs = (await a.run("ls -A /dev")).split(/\s+/).filter(Boolean);
    for (const d of devs) expect(["console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"]).toContain(d);
    const shm = `molecule-tb-${marker}`;
    expect(await a.run(`echo x > /dev/shm/${shm} && echo made`)).toBe("made\n");
    expect(existsSync(`/dev/shm/${shm}`)).toBe(false);
    expect(await a.run("ls -A /run; ls /run/docker.sock /var/run/docker.sock 2>&1 | grep -c 'No such'")).toBe("2\n");
  });

  it.skipIf(!asRoot)("runs as the workspace's own unprivileged host uid, without capabilities", async () => {
    const [pid] = hostPidsOfSession(a.hello!.session);
    expect(pid).toBeDefined();
    const uids = statusField(pid!, "Uid").split(/\s+/).map(Number);
    const uid = uids[0]!;
    expect(uid).toBeGreaterThanOrEqual(DEFAULT_UID_RANGE.base);
    expect(new Set(uids)).toEqual(new Set([uid]));
    expect(statusField(pid!, "CapEff")).toBe("0000000000000000");
    expect(statusField(pid!, "CapBnd")).toBe("0000000000000000");
    expect(await a.run("grep CapEff /proc/self/status")).toMatch(/CapEff:\s+0{16}/);
    await a.run("echo hi > /root/made-inside.txt");
    expect(statSync(join(root, wsA, "root", "made-inside.txt")).uid).toBe(uid);
    // Another workspace, another uid.
    const [pidB] = hostPidsOfSession(b.hello!.session);
    expect(Number(statusField(pidB!, "Uid").split(/\s+/)[0])).not.toBe(uid);
  });

  it.skipIf(!asRoot)("keeps a fork bomb inside its workspace while another session keeps echoing", async () => {
    expect((await a.run("ulimit -u")).trim()).toBe(String(PIDS));
    const [pid] = hostPidsOfSession(a.hello!.session);
    const uid = Number(statusField(pid!, "Uid").split(/\s+/)[0]);
    // Forks until the limit for 6 s; the sleeps outlive the loop, holding the limit.
    const from = a.text().length;
    a.send("timeout -s KILL 6 bash -c 'while :; do sleep 20 & done' 2>/dev/null; echo BOMB-$((6*7))\r");
    let most = 0;
    const started = Date.now();
    while (Date.now() - started < 5000) {
      const t0 = performance.now();
      expect((await b.run("echo still-here", 5000)).trim()).toBe("still-here");
      expect(performance.now() - t0).toBeLessThan(2000);
      most = Math.max(most, processesOf(uid));
    }
    await a.waitText("BOMB-42", 15_000, from);
    most = Math.max(most, processesOf(uid));
    expect(most).toBeGreaterThan(PIDS / 2); // it did fork…
    expect(most).toBeLessThanOrEqual(PIDS); // …up to its limit and no further
    await a.run("pkill -KILL sleep; echo done", 15_000);
  }, 40_000);

  it.skipIf(!asRoot)("kills what allocates beyond the workspace's memory limit, and only that", async () => {
    const out = await a.run(`head -c ${MEMORY * 2} /dev/zero | tail -n 1 > /dev/null; echo "rc=\${PIPESTATUS[1]}"`, 30_000);
    expect(out.trim()).toMatch(/(^|\n)rc=137$/); // SIGKILL from the cgroup's OOM killer
    expect((await a.run("echo shell-alive")).trim()).toBe("shell-alive");
    expect((await b.run("echo neighbour-alive")).trim()).toBe("neighbour-alive");
  }, 40_000);
});
