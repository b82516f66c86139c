import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readyWorkspace, waitFor } from "../../../../test/helpers/http.ts";
import { startStack, type Stack } from "../../../../test/helpers/stack.ts";
import { openShell } from "../../../../test/helpers/term-client.ts";

let s: Stack;
let token: string;
let ws: string;
beforeAll(async () => {
  s = await startStack();
  token = (await s.org("t")).token;
  ws = await readyWorkspace(s.url, token);
});
afterAll(() => s.close());

describe("terminal v1 (user journey step 4)", () => {
  it("runs whoami, df -h / and echo $MOLECULE_WS_ID in the workspace", async () => {
    const c = await openShell(s.wsUrl, ws, { token, cols: 100, rows: 30 });
    expect(c.hello).toMatchObject({ type: "hello", offset: 0, cols: 100, rows: 30 });
    expect(await c.run("whoami")).toBe("root\n");
    expect(await c.run("df -h /")).toMatch(/Filesystem[\s\S]*\/\n/);
    expect((await c.run("echo $MOLECULE_WS_ID")).trim()).toBe(ws);
    expect((await c.run("stty size")).trim()).toBe("30 100");
    c.resize(120, 40);
    // The resize travels apart from the input: ask until the shell's terminal has it.
    await waitFor(async () => (await c.run("stty size")).trim() === "40 120", 5000, 0);
    expect((await c.run("echo $TERM")).trim()).toBe("xterm-256color");
    c.send("exit 3\r");
    const exit = await c.waitMessage("exit");
    expect(exit).toEqual({ type: "exit", code: 3, signal: null });
    expect((await c.closed).code).toBe(1000);
  });
});
