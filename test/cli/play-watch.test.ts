/** `molecule play <session>` and `molecule watch <session>` (the built CLI) against a real stack that records. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFsStore } from "@molecule/shared/recording/index";
import { readyWorkspace, waitFor, call } from "../helpers/http.ts";
import { startStack, type Stack } from "../helpers/stack.ts";
import { openShell } from "../helpers/term-client.ts";
import { buildCli, cliHome, PtyProc, runCli } from "./harness.ts";

let stack: Stack;
let token: string;
let bin: string;
let ws: string;
let dir: string;
const cleanups: (() => void)[] = [];
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "molecule-rec-"));
  const [s, b] = await Promise.all([startStack({ recording: { store: createFsStore(dir) } }), buildCli()]);
  stack = s;
  bin = b.bin;
  cleanups.push(b.cleanup);
  token = (await stack.org("cli-rec")).token;
  ws = await readyWorkspace(stack.url, token, "cli-rec");
});
afterAll(async () => {
  for (const c of cleanups) c();
  await stack?.close();
  rmSync(dir, { recursive: true, force: true });
});

function env(): Record<string, string> {
  const h = cliHome();
  cleanups.push(h.cleanup);
  return { ...h.env, MOLECULE_TOKEN: token, MOLECULE_API: stack.url };
}

describe("molecule play and watch", () => {
  it("play writes the recorded output (found without --workspace); --raw prints the .cast", async () => {
    const c = await openShell(stack.wsUrl, ws, { token });
    const sid = c.hello!.session;
    await c.run("echo played-$((40+2))");
    c.send("exit\r");
    await c.closed;
    await waitFor(async () => (await call(stack.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token })).body.sessions.find((s: { id: string }) => s.id === sid)?.recording?.complete);
    const e = env();
    const played = await runCli(bin, ["play", sid, "--speed", "10"], { env: e });
    expect(played.code, played.stderr).toBe(0);
    expect(played.stdout).toBe(c.text());
    const raw = await runCli(bin, ["play", sid, "--raw", "-w", "cli-rec"], { env: e });
    expect(raw.code).toBe(0);
    expect(JSON.parse(raw.stdout.split("\n")[0]!)).toMatchObject({ version: 2, title: "cli-rec" });
    const bad = await runCli(bin, ["play", "not-a-session"], { env: e });
    expect(bad.code).toBe(2);
  });

  it("watch shows a live session read-only and stops when the controller closes", async () => {
    const c = await openShell(stack.wsUrl, ws, { token });
    const sid = c.hello!.session;
    await c.run("echo before-watch");
    const w = new PtyProc(process.execPath, [bin, "watch", sid, "-w", ws], { env: env() });
    await w.waitText("before-watch");
    await c.until(() => c.messages.some((m) => m.type === "viewers" && m.count === 1), 10_000, "one watcher");
    w.write("echo typed-by-watcher\r");
    await c.run("echo live-$((2+2))");
    await w.waitText("live-4");
    expect(c.text()).not.toContain("typed-by-watcher");
    await c.close(1000);
    await w.waitText("the controller closed the session");
    expect((await w.exited).exitCode).toBe(0);
  });
});
