import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { schema, type ServerMessage } from "@molecule/shared";
import { createFsStore } from "@molecule/shared/recording/index";
import { call, readyWorkspace, waitFor } from "./helpers/http.ts";
import { startStack, type Stack } from "./helpers/stack.ts";
import { openShell, TermClient } from "./helpers/term-client.ts";

type Viewers = Extract<ServerMessage, { type: "viewers" }>;

let s: Stack;
let nodeB: Awaited<ReturnType<Stack["addApi"]>>;
let nodeC: Awaited<ReturnType<Stack["addApi"]>>;
let token: string;
let ws: string;
let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "molecule-rec-"));
  s = await startStack({ recording: { store: createFsStore(dir) } });
  [nodeB, nodeC] = [await s.addApi(), await s.addApi()];
  token = (await s.org("viewers")).token;
  ws = await readyWorkspace(s.url, token);
});
afterAll(async () => {
  await s?.close();
  rmSync(dir, { recursive: true, force: true });
});

const lastViewers = (c: TermClient): Viewers | undefined => c.messages.filter((m): m is Viewers => m.type === "viewers").at(-1);
const untilViewers = (c: TermClient, count: number) => c.until(() => lastViewers(c)?.count === count, 10_000, `viewers count ${count}`);

/** A controller on node A and a viewer on each of nodes B and C, all on one session. */
async function trio() {
  const ctl = await openShell(s.wsUrl, ws, { token });
  await ctl.run("echo before-viewers");
  const session = ctl.hello!.session;
  const v1 = await openShell(nodeB.wsUrl, ws, { token, session, view: true });
  const v2 = await openShell(nodeC.wsUrl, ws, { token, session, view: true });
  return { ctl, v1, v2, session };
}

describe("live viewers (mode=view)", () => {
  it("viewers on other API nodes get the screen and live output; presence reaches everyone", async () => {
    const { ctl, v1, v2 } = await trio();
    // The replay window: what the shell printed before they came.
    await v1.waitText("before-viewers");
    await v2.waitText("before-viewers");
    const out = await ctl.run("echo live-$((40+2))");
    expect(out).toBe("live-42\n");
    await v1.waitText("live-42");
    await v2.waitText("live-42");
    await untilViewers(ctl, 2);
    await untilViewers(v1, 2);
    await untilViewers(v2, 2);
    const p = lastViewers(ctl)!;
    expect(p.viewers.map((v) => v.label)).toEqual([expect.stringMatching(/^mol_/), expect.stringMatching(/^mol_/)]);
    expect(p.viewers.every((v) => v.address === "127.0.0.1" && !Number.isNaN(Date.parse(v.since)))).toBe(true);
    expect(p.controller?.address).toBe("127.0.0.1");
    await Promise.all([v1.close(), v2.close()]);
    await ctl.close();
  });

  it("a viewer's input and resizes never reach the shell (read_only), and the session keeps its size", async () => {
    const { ctl, v1, v2 } = await trio();
    v1.send("echo VIEWER-TYPED-$((1+1))\r");
    v1.resize(33, 11);
    await v1.until(() => v1.messages.filter((m) => m.type === "error" && m.code === "read_only").length === 2, 10_000, "two read_only errors");
    // Everything the viewer sent was handled (answered) before the controller's next command.
    expect(await ctl.run("stty size")).toBe("24 80\n");
    expect(ctl.text()).not.toContain("VIEWER-TYPED-2");
    // read_only does not close the viewer: it still watches.
    await v1.waitText("24 80");
    expect(v1.closeInfo).toBeNull();
    await Promise.all([v1.close(), v2.close()]);
    await ctl.close();
  });

  it("a viewer's close leaves the shell running; presence says one fewer", async () => {
    const { ctl, v1, v2, session } = await trio();
    await untilViewers(ctl, 2);
    await v1.close(1000);
    await untilViewers(ctl, 1);
    await untilViewers(v2, 1);
    expect(await ctl.run("echo still-here")).toBe("still-here\n");
    expect(s.worker!.terminal!.sessions.has(session)).toBe(true);
    await v2.close(1001);
    await untilViewers(ctl, 0);
    expect(await ctl.run("echo still-here-2")).toBe("still-here-2\n");
    await ctl.close();
  });

  it("the controller's close ends the session; viewers are told why before their close", async () => {
    const { ctl, v1, v2, session } = await trio();
    await untilViewers(ctl, 2);
    await ctl.close(1000);
    for (const v of [v1, v2]) {
      const closed = await v.closed;
      expect(closed.code).toBe(1000);
      const last = v.messages.at(-1);
      expect(last).toMatchObject({ type: "error", code: "session_closed" });
    }
    await waitFor(async () => !s.worker!.terminal!.sessions.has(session));
    // The audit says who watched, from when until when.
    const t = schema.terminalSessionViewers;
    const rows = await waitFor(async () => {
      const r = await s.db.db.select().from(t).where(eq(t.sessionId, session));
      return r.length === 2 && r.every((x) => x.endedAt) ? r : null;
    });
    for (const r of rows) {
      expect(r.tokenPrefix).toMatch(/^mol_/);
      expect(r.clientAddr).toBe("127.0.0.1");
      expect(r.endedAt!.getTime()).toBeGreaterThanOrEqual(r.startedAt.getTime());
    }
  });

  it("a viewer that never reads stalls nobody: the controller and the other viewer get everything, the slow one a gap", async () => {
    const { ctl, v1, v2 } = await trio();
    // v1 neither reads its socket nor acks: its window fills and stays full.
    v1.autoAck = false;
    (v1.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    // Far more than the replay window (1 MiB) and the viewer's window (512 KiB).
    const out = await ctl.run("head -c 3000000 /dev/zero | base64 -w 100 | wc -l; head -c 3000000 /dev/zero | base64 -w 100 | tail -c 300 >/dev/null; head -c 6000000 /dev/zero | tr '\\0' 'x' | fold -w 100; echo flood-done", 60_000);
    expect(out).toContain("flood-done");
    await v2.waitText("flood-done", 30_000);
    expect(v2.gaps).toEqual([]);
    // The controller's echo while the viewer still hangs.
    const echo: number[] = [];
    for (let i = 0; i < 20; i++) {
      const from = ctl.text().length;
      const t0 = performance.now();
      ctl.send(String(i % 10));
      await ctl.waitText(String(i % 10), 5000, from);
      echo.push(performance.now() - t0);
    }
    ctl.send("\x15"); // clear the line
    echo.sort((a, b) => a - b);
    const p50 = echo[10]!;
    const max = echo[19]!;
    process.stdout.write(`controller echo with a hung viewer: p50 ${p50.toFixed(1)} ms, max ${max.toFixed(1)} ms\n`);
    expect(max).toBeLessThan(1000);
    // The slow viewer, reading again, is told what it missed (a gap), then follows live.
    (v1.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    v1.autoAck = true;
    v1.ack();
    await v1.until(() => v1.gaps.length > 0, 30_000, "a gap for the slow viewer");
    const tag = await ctl.run("echo after-$((6*7))");
    expect(tag).toBe("after-42\n");
    await v1.waitText("after-42", 30_000).catch((err) => {
      throw new Error(`v1 offset ${v1.offset} ctl offset ${ctl.offset} gaps ${JSON.stringify(v1.gaps)}: ${err}`);
    });
    await Promise.all([v1.close(), v2.close()]);
    await ctl.close();
  });

  it("a view ticket opens only a viewer; mode=view needs a session; a foreign org's session is refused", async () => {
    const ctl = await openShell(s.wsUrl, ws, { token });
    const session = ctl.hello!.session;
    const t1 = await call(s.url, "POST", `/workspaces/${ws}/terminal/tickets`, { token, body: { mode: "view" } });
    expect(t1.status).toBe(201);
    const asCtl = new TermClient(nodeB.wsUrl, ws, { ticket: t1.body.ticket, session });
    expect((await asCtl.refused)?.status).toBe(403);
    const t2 = await call(s.url, "POST", `/workspaces/${ws}/terminal/tickets`, { token, body: { mode: "view" } });
    const v = await openShell(nodeB.wsUrl, ws, { ticket: t2.body.ticket, session, view: true });
    v.send("x");
    await v.waitMessage("error");
    expect(v.messages.find((m) => m.type === "error")).toMatchObject({ code: "read_only" });
    const bad = await call(s.url, "POST", `/workspaces/${ws}/terminal/tickets`, { token, body: { mode: "watch" } });
    expect(bad.status).toBe(400);
    const noSession = new TermClient(s.wsUrl, ws, { token, view: true });
    expect((await noSession.refused)?.status).toBe(400);
    const other = (await s.org("other")).token;
    const foreign = new TermClient(s.wsUrl, ws, { token: other, session, view: true });
    expect((await foreign.refused)?.status).toBe(404);
    await v.close();
    await ctl.close();
  });
});
