import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, readyWorkspace, waitFor } from "../../../../test/helpers/http.ts";
import { startStack, type Stack } from "../../../../test/helpers/stack.ts";
import { loggedText } from "../../../../test/helpers/session-log.ts";
import { openShell } from "../../../../test/helpers/term-client.ts";

let s: Stack;
let token: string;
let ws: string;
beforeAll(async () => {
  s = await startStack({ worker: { replayWindowBytes: 64 * 1024 } });
  token = (await s.org("replay")).token;
  ws = await readyWorkspace(s.url, token);
});
afterAll(() => s.close());

describe("replay window", () => {
  it("output older than the replay window is reported as a gap, then the stream continues exactly at `to`", async () => {
    const c = await openShell(s.wsUrl, ws, { token });
    await c.run("stty -echo");
    const session = c.hello!.session;
    const offset = c.offset;
    const from = c.text().length;
    c.send("sleep 0.3; head -c 300000 /dev/zero | tr '\\0' y; echo; echo after-the-flood-$((1))\r");
    // The first 'y's prove the command reached the shell; the rest is produced with no client attached.
    await c.waitText("yy", 10_000, from);
    c.drop();
    await waitFor(async () => (await loggedText(s.redis, s.ns, session)).includes("after-the-flood-1"), 10_000);
    const r = await openShell(s.wsUrl, ws, { token, session, offset });
    const gap = await r.waitMessage("gap");
    expect(gap.from).toBe(offset);
    expect(gap.to).toBeGreaterThan(offset + 200_000);
    await r.waitText("after-the-flood-1");
    // After the gap the bytes are exactly the session's bytes from `to` on (the 'y's, then the marker).
    const text = r.text();
    expect(text).toMatch(/^y+\r\nafter-the-flood-1\r\n/);
    expect(r.offset).toBe(gap.to + r.output.length);
    await r.close();
  });

  it("re-attaching after the shell exited replays what is left, then exit", async () => {
    const c = await openShell(s.wsUrl, ws, { token });
    await c.run("true");
    const session = c.hello!.session;
    const offset = c.offset;
    c.send("sleep 0.2; echo last-$((2+3))-words; exit 5\r");
    c.drop();
    await waitFor(async () => {
      const r = await call(s.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token });
      return r.body.sessions.find((x: { id: string; closed_at: string | null }) => x.id === session)?.closed_at;
    });
    const r = await openShell(s.wsUrl, ws, { token, session, offset });
    await r.waitText("last-5-words");
    expect(await r.waitMessage("exit")).toEqual({ type: "exit", code: 5, signal: null });
    expect((await r.closed).code).toBe(1000);
  });
});

describe("re-attach offsets", () => {
  it("an offset beyond the session's output is answered with the real end in hello, and output continues from there", async () => {
    const c = await openShell(s.wsUrl, ws, { token });
    await c.run("true");
    // The prompt after the command is the last output: then the client has it all.
    await c.until(() => /# $/.test(c.text()), 5000, "prompt");
    const session = c.hello!.session;
    const end = c.offset;
    c.drop();
    const r = await openShell(s.wsUrl, ws, { token, session, offset: end + 1_000_000 });
    expect(r.hello!.offset).toBe(end);
    expect((await r.run("echo resumed-$((2*21))")).trim()).toBe("resumed-42");
    expect(r.offset).toBe(end + r.output.length);
    await r.close();
  });
});

describe("full-screen programs", () => {
  it("less and vim use the alternate screen, follow resizes, and give the prompt back", async () => {
    const c = await openShell(s.wsUrl, ws, { token, cols: 90, rows: 20 });
    await c.run("seq 1 500 > nums.txt");
    let from = c.text().length;
    c.send("less nums.txt\r");
    await c.waitText("\x1b[?1049h", 5000, from);
    await c.waitText(/\r?\n19\r?\n/, 5000, from);
    from = c.text().length;
    c.resize(100, 30);
    // less lays out the new size (29 lines of text + its prompt line) when it repaints; ^L
    // forces the repaint in case the SIGWINCH came while less was not waiting for a key; sent
    // again until the repaint has the new size (the resize and the key travel separately)...
    await waitFor(async () => {
      c.send("\x0c");
      await c.waitText(/\r?\n29\r?\n/, 500, from);
      return true;
    }, 5000, 0);
    from = c.text().length;
    // ...and still takes keys: G jumps to the end.
    c.send("G");
    await c.waitText("500", 5000, from);
    c.send("q");
    await c.waitText("\x1b[?1049l", 5000, from);
    expect((await c.run("stty size")).trim()).toBe("30 100");
    from = c.text().length;
    c.send("vim -u NONE -N nums.txt\r");
    await c.waitText("\x1b[?1049h", 5000, from);
    await c.waitText('"nums.txt"', 5000, from);
    c.send("\x1b:q!\r");
    await c.waitText("\x1b[?1049l", 5000, from);
    from = c.text().length;
    c.send("top -b -n 1 | head -3\r");
    await c.waitText(/Tasks:/, 5000, from);
    await c.close();
  });
});

describe("audit listing", () => {
  it("lists the workspace's sessions newest first", async () => {
    const r = await call(s.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token });
    const opened = r.body.sessions.map((x: { opened_at: string }) => Date.parse(x.opened_at));
    expect(opened.length).toBeGreaterThanOrEqual(3);
    expect([...opened].sort((a, b) => b - a)).toEqual(opened);
  });
});
