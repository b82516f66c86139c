import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bwrapAvailable } from "../apps/terminal-worker/src/providers/index.ts";
import { call, readyWorkspace, waitFor } from "./helpers/http.ts";
import { hostPidsOfSession, processesOf, statusField } from "./helpers/procs.ts";
import { startStack, type Stack } from "./helpers/stack.ts";
import { openShell } from "./helpers/term-client.ts";

/**
 * A workspace's second shell comes from a spare the worker started after the first
 * (terminal/spare-shells.ts): it must be the same sandbox, for the same session, as a
 * shell spawned at its open — only sooner.
 */
const usable = bwrapAvailable();
const asRoot = process.getuid?.() === 0;

let s: Stack;
let token: string;
const spares = () => s.worker!.terminal!.spares.stats();

describe.skipIf(!usable && process.env.CI !== "true")("spare shells (local provider, real stack)", () => {
  beforeAll(async () => {
    s = await startStack({ worker: { spareShells: 8 } });
    token = (await s.org("spares")).token;
  });
  afterAll(async () => {
    await s?.close();
  });

  it("the next shell of a workspace is its spare: this session's id, TERM and size, echo on, same uid, cgroups and sandbox", async () => {
    const ws = await readyWorkspace(s.url, token, "spare-ws");
    const first = await openShell(s.wsUrl, ws, { token });
    await first.waitText(/[#$] $/);
    await waitFor(async () => spares().ready >= 1, 10_000);
    const taken = spares().taken;

    const c = await openShell(s.wsUrl, ws, { token, term: "xterm-kitty", cols: 101, rows: 33 });
    await c.waitText(/[#$] $/);
    expect(spares().taken).toBe(taken + 1);
    const sid = c.hello!.session;
    expect(c.text()).not.toContain(sid); // the release line's echo never reaches the screen
    expect(await c.run('echo "$MOLECULE_SESSION_ID $TERM $MOLECULE_WS_ID"')).toBe(`${sid} xterm-kitty ${ws}\n`);
    expect(await c.run("stty size")).toBe("33 101\n");
    expect(await c.run("stty -a | grep -o -- ' -*echo ' | head -1")).toBe(" echo \n");
    expect(await c.run("whoami; hostname")).toBe(`root\nws-${ws.slice(0, 12)}\n`);
    // The same environment as the shell spawned at its open, but for the session's own two.
    const envOf = async (t: typeof c) => (await t.run("env | grep -Ev '^(MOLECULE_SESSION_ID|TERM|_)=' | sort")).split("\n");
    expect(await envOf(c)).toEqual(await envOf(first));
    // ps runs alone (its output filtered after it is done): a pipeline's other parts, forked but not
    // yet exec'd, would show as one more `bash` for a moment.
    const procs = `p=$(ps -e -o pid=,comm=); printf '%s\n' "$p" | tr -s ' ' | grep -Ev ' ps$'`;
    expect(await c.run(procs)).toBe(" 1 bwrap\n 2 bash\n");
    expect(await first.run(procs)).toBe(" 1 bwrap\n 2 bash\n");
    // Typed input still reaches it (the release line was the gate's only input).
    expect(await c.run("echo typed-$((40+2))")).toBe("typed-42\n");

    if (asRoot) {
      const [pid] = hostPidsOfSession(sid);
      expect(pid).toBeDefined();
      const uid = statSync(join(s.sandboxRoot, ws)).uid;
      expect(Number(statusField(pid!, "Uid").split(/\s+/)[0])).toBe(uid);
      expect(statusField(pid!, "CapEff")).toBe("0000000000000000");
      const cg = readFileSync(`/proc/${pid}/cgroup`, "utf8");
      expect(cg).toMatch(new RegExp(`:pids:.*/${ws}\\n`));
      expect(cg).toMatch(new RegExp(`:memory:.*/${ws}\\n`));
      expect((await c.run("ulimit -u")).trim()).not.toBe("unlimited");
    }

    await first.close();
    await c.close();
  });

  it("an exec session never takes a spare; destroying the workspace stops its spare", async () => {
    const ws = await readyWorkspace(s.url, token, "spare-exec");
    const first = await openShell(s.wsUrl, ws, { token });
    await first.waitText(/[#$] $/);
    await waitFor(async () => spares().ready >= 1, 10_000);
    const before = spares();
    const exec = await openShell(s.wsUrl, ws, { token, command: ["sh", "-c", 'echo "exec-$MOLECULE_SESSION_ID"'] });
    await exec.waitText(`exec-${exec.hello!.session}`);
    await exec.closed;
    expect(spares().taken).toBe(before.taken);
    await first.close();

    const uid = statSync(join(s.sandboxRoot, ws)).uid;
    const r = await call(s.url, "DELETE", `/workspaces/${ws}`, { token });
    expect([200, 202, 204]).toContain(r.status);
    await waitFor(async () => spares().spares < before.spares, 15_000);
    if (asRoot) await waitFor(async () => processesOf(uid) === 0, 10_000);
  });
});
