import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readyWorkspace } from "../../../../test/helpers/http.ts";
import { startStack, type Stack } from "../../../../test/helpers/stack.ts";
import { openShell } from "../../../../test/helpers/term-client.ts";

let s: Stack;
let token: string;
let ws: string;
beforeAll(async () => {
  s = await startStack({ api: { maxFrameBytes: 64 * 1024, inputBytesPerSec: 128 * 1024 } });
  token = (await s.org("bad")).token;
  ws = await readyWorkspace(s.url, token);
});
afterAll(() => s.close());

describe("bad client frames never end the session or hurt another one", () => {
  it("malformed JSON, unknown types and out-of-range resize get bad_message and the session continues", async () => {
    const c = await openShell(s.wsUrl, ws, { token });
    const bad = [
      "{not json",
      "[]",
      "42",
      JSON.stringify({ type: "launch-missiles" }),
      JSON.stringify({ kind: "resize" }),
      JSON.stringify({ type: "resize", cols: 0, rows: 24 }),
      JSON.stringify({ type: "resize", cols: 80, rows: 1001 }),
      JSON.stringify({ type: "resize", cols: "80", rows: 24 }),
      JSON.stringify({ type: "ack", offset: -1 }),
    ];
    for (const f of bad) c.sendText(f);
    await c.until(() => c.messages.filter((m) => m.type === "error").length === bad.length, 5000, "bad_message errors");
    const errors = c.messages.filter((m) => m.type === "error");
    expect(errors.every((e) => e.type === "error" && e.code === "bad_message")).toBe(true);
    expect(JSON.stringify(errors)).toContain("launch-missiles");
    expect(c.closeInfo).toBeNull();
    // Still the same size (bad resizes were ignored) and still working.
    expect((await c.run("stty size")).trim()).toBe("24 80");
    c.sendText(JSON.stringify({ type: "ping" }));
    await c.waitMessage("pong");
    await c.close();
  });

  it("a frame over the maximum closes with 1008 and a policy error; another session is unaffected", async () => {
    const victim = await openShell(s.wsUrl, ws, { token });
    const other = await openShell(s.wsUrl, ws, { token });
    victim.send(Buffer.alloc(64 * 1024 + 1, 0x61));
    const err = await victim.waitMessage("error");
    expect(err).toMatchObject({ code: "policy" });
    expect((await victim.closed).code).toBe(1008);
    expect((await other.run("echo still-here")).trim()).toBe("still-here");
    await other.close();
  });

  it("a client flooding input is slowed down without affecting another session", async () => {
    const flood = await openShell(s.wsUrl, ws, { token });
    const calm = await openShell(s.wsUrl, ws, { token });
    // The markers are computed by the shell so that the PTY's echo of the command line cannot match them:
    // input sent before `stty raw -echo` has run lands in the canonical line buffer, which keeps 4 KiB and drops the rest.
    flood.send("stty raw -echo; echo flood-$((0+1))-reading; head -c 524288 > /dev/null; stty sane; echo flood-$((1+1))-done\r");
    await flood.waitText("flood-1-reading");
    const chunk = Buffer.alloc(16 * 1024, 0x62);
    const t0 = performance.now();
    // 512 KiB at a 128 KiB/s budget must take about 3 s or more.
    for (let i = 0; i < 32; i++) flood.send(chunk);
    const lat: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = Date.now();
      await calm.run(`echo calm-${i}`);
      lat.push(Date.now() - t);
    }
    expect(Math.max(...lat)).toBeLessThan(1000);
    // The shell receives the input at about the budget's pace (nominally 3 s after the 128 KiB burst),
    // not at once (~10 ms unthrottled); frames already read from the socket when it pauses add some slack.
    await flood.waitText("flood-2-done", 15_000);
    expect(performance.now() - t0).toBeGreaterThan(2000);
    expect(flood.closeInfo).toBeNull();
    await flood.close();
    await calm.close();
  });
});

describe("legacy raw mode (no subprotocol)", () => {
  it("keystrokes as text frames, output as binary frames, the user journey's commands", async () => {
    const c = await openShell(s.wsUrl, ws, { token, mode: "raw" });
    expect(c.ws.protocol).toBe("");
    c.sendText("echo $MOLECULE_WS_ID; whoami\r");
    await c.waitText(new RegExp(`${ws}\\r\\nroot`));
    // JSON is just input in raw mode: it reaches the shell verbatim.
    c.sendText('echo {"type":"ping"}\r');
    await c.waitText("{type:ping}");
    expect(c.messages).toEqual([]);
    c.sendText("exit\r");
    expect((await c.closed).code).toBe(1000);
  });
});
