import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eq } from "drizzle-orm";
import { schema } from "@molecule/shared";
import { createFsStore } from "@molecule/shared/recording/index";
import { call, readyWorkspace, waitFor } from "./helpers/http.ts";
import { startStack, type Stack } from "./helpers/stack.ts";
import { openShell } from "./helpers/term-client.ts";

type Ev = [number, string, string];
function parseCast(text: string): { header: Record<string, any>; events: Ev[] } {
  const lines = text.split("\n").filter(Boolean);
  return { header: JSON.parse(lines[0]!), events: lines.slice(1).map((l) => JSON.parse(l) as Ev) };
}
const outputOf = (events: Ev[]) =>
  events
    .filter((e) => e[1] === "o")
    .map((e) => e[2])
    .join("");

let s: Stack;
let dir: string;
let token: string;
let orgId: string;
let ws: string;
const MAX = 64 * 1024;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "molecule-rec-"));
  s = await startStack({ recording: { store: createFsStore(dir), maxBytes: MAX } });
  ({ token, orgId } = await s.org("rec"));
  ws = await readyWorkspace(s.url, token);
});
afterAll(async () => {
  await s?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function sessionRow(id: string) {
  const r = await call(s.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token });
  return r.body.sessions.find((x: { id: string }) => x.id === id);
}
const recordingOf = (sid: string, t = token) => call(s.url, "GET", `/workspaces/${ws}/terminal/sessions/${sid}/recording`, { token: t });
/** The session ended and its recording is complete. */
const completed = (sid: string) => waitFor(async () => ((await sessionRow(sid))?.recording?.complete ? sessionRow(sid) : null), 15_000);

describe("session recording", () => {
  it("records output and resizes as asciicast v2, served as application/x-asciicast; the list says its size", async () => {
    const c = await openShell(s.wsUrl, ws, { token, cols: 90, rows: 30 });
    const sid = c.hello!.session;
    expect(await c.run("echo first-$((1+1))")).toBe("first-2\n");
    c.resize(100, 40);
    expect(await c.run("stty size")).toBe("40 100\n");
    expect(await c.run("printf 'h\\303\\251llo \\342\\202\\254\\n'")).toBe("héllo €\n");
    c.send("exit\r");
    await c.closed;
    const row = await completed(sid);
    const r = await recordingOf(sid);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/x-asciicast");
    const text = typeof r.body === "string" ? r.body : JSON.stringify(r.body);
    // The stored size (the tape: the bytes plus a small head per flush), final now.
    expect(row.recording).toEqual({ bytes: statSync(join(dir, orgId, ws, `${sid}.tape`)).size, truncated: false, complete: true });
    const { header, events } = parseCast(text);
    expect(header).toMatchObject({ version: 2, width: 90, height: 30, env: { TERM: "xterm-256color", SHELL: expect.any(String) }, title: expect.any(String) });
    expect(typeof header.timestamp).toBe("number");
    const times = events.map((e) => e[0]);
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    expect(events.some((e) => e[1] === "r" && e[2] === "100x40")).toBe(true);
    const out = outputOf(events);
    expect(out).toContain("first-2");
    expect(out).toContain("40 100");
    expect(out).toContain("héllo €");
    // Byte for byte what the live terminal got.
    expect(out).toBe(c.text());
    // Input is not recorded unless the org asks.
    expect(events.some((e) => e[1] === "i")).toBe(false);
  });

  it("follows a live session until it ends", async () => {
    const c = await openShell(s.wsUrl, ws, { token });
    const sid = c.hello!.session;
    await c.run("echo before-follow");
    const res = await fetch(`${s.url}/workspaces/${ws}/terminal/sessions/${sid}/recording`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let got = "";
    const readUntil = async (needle: string) => {
      while (!got.includes(needle)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`ended before ${needle}`);
        got += Buffer.from(value).toString();
      }
    };
    await readUntil("before-follow");
    await c.run("echo during-$((3*7))");
    await readUntil("during-21");
    c.send("exit\r");
    await c.closed;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      got += Buffer.from(value).toString();
    }
    const row = await completed(sid);
    expect(row.recording.complete).toBe(true);
    // What was followed live is the same as the finished file served now.
    expect(got).toBe((await recordingOf(sid)).body);
    expect(outputOf(parseCast(got).events)).toBe(c.text());
  });

  it("is complete and in order across a drop, a re-attach through another API node, and a viewer", async () => {
    const b = await s.addApi();
    const c = await openShell(s.wsUrl, ws, { token });
    const sid = c.hello!.session;
    await c.run("echo part-1");
    // $((…)): the marker is the shell's output, never the PTY's echo of the typed line.
    c.send("sleep 0.2; echo part-$((1+1))-while-away\r");
    await c.waitText("sleep 0.2");
    c.drop();
    // Output made while nobody is attached is recorded all the same (the file is the worker's).
    const file = join(dir, orgId, ws, `${sid}.tape`);
    await waitFor(async () => existsSync(file) && readFileSync(file, "utf8").includes("part-2-while-away"), 10_000);
    const again = await openShell(b.wsUrl, ws, { token, session: sid, offset: 0 });
    await again.waitText("part-2-while-away");
    await again.run("echo part-3-on-node-b");
    again.send("exit\r");
    await again.closed;
    await completed(sid);
    const out = outputOf(parseCast((await recordingOf(sid)).body).events);
    const i1 = out.indexOf("part-1");
    const i2 = out.indexOf("part-2-while-away\r\n");
    const i3 = out.indexOf("part-3-on-node-b\r\n");
    expect(i1).toBeGreaterThanOrEqual(0);
    expect(i2).toBeGreaterThan(i1);
    expect(i3).toBeGreaterThan(i2);
    // The second client replayed from 0: it saw exactly what was recorded.
    expect(out).toBe(again.text());
  });

  it("stops at the size cap, says so in the file, and the list says truncated", async () => {
    const c = await openShell(s.wsUrl, ws, { token });
    const sid = c.hello!.session;
    await c.run("head -c 200000 /dev/zero | tr '\\0' 'y' | fold -w 100; echo big-done", 30_000);
    c.send("exit\r");
    await c.closed;
    const row = await completed(sid);
    expect(row.recording.truncated).toBe(true);
    const text = (await recordingOf(sid)).body as string;
    // The stored recording stays within the cap (its marker record aside).
    expect(row.recording.bytes).toBeLessThanOrEqual(MAX + 200);
    const { events } = parseCast(text);
    const last = events.at(-1)!;
    expect(last[1]).toBe("m");
    expect(last[2]).toMatch(/truncated.*65536/);
    expect(outputOf(events).length).toBeGreaterThan(MAX / 2);
  });

  it("a foreign org's session is a 404; bad ids are 400; a session without a recording is a 404", async () => {
    const c = await openShell(s.wsUrl, ws, { token });
    const sid = c.hello!.session;
    await c.run("echo x");
    const other = (await s.org("foreign")).token;
    expect((await recordingOf(sid, other)).status).toBe(404);
    const otherWs = await readyWorkspace(s.url, other);
    expect((await call(s.url, "GET", `/workspaces/${otherWs}/terminal/sessions/${sid}/recording`, { token: other })).status).toBe(404);
    expect((await call(s.url, "GET", `/workspaces/${ws}/terminal/sessions/not-a-uuid/recording`, { token })).status).toBe(400);
    expect((await call(s.url, "GET", `/workspaces/${ws}/terminal/sessions/00000000-0000-4000-8000-000000000000/recording`, { token })).status).toBe(404);
    expect((await call(s.url, "GET", `/workspaces/${ws}/terminal/sessions/${sid}/recording`)).status).toBe(401);
    await c.close();
  });
});


describe("a recording whose worker died", () => {
  it("is completed by the sweep with what reached the store, and served", async () => {
    const c = await openShell(s.wsUrl, ws, { token });
    const sid = c.hello!.session;
    await c.run("echo before-the-crash");
    c.send("exit\r");
    await c.closed;
    await completed(sid);
    // As a crashed worker leaves it: the session closed long ago, the recording never completed.
    const t = schema.terminalSessions;
    const closedAt = new Date(Date.now() - 120_000);
    await s.db.db.update(t).set({ recordingEndedAt: null, recordingBytes: 0, closedAt }).where(eq(t.id, sid));
    expect((await sessionRow(sid)).recording.complete).toBe(false);
    expect(await s.api.recoverAbandonedRecordings(new Date())).toBeGreaterThanOrEqual(1);
    const row = await sessionRow(sid);
    expect(row.recording).toEqual({ bytes: statSync(join(dir, orgId, ws, `${sid}.tape`)).size, truncated: false, complete: true });
    expect(outputOf(parseCast((await recordingOf(sid)).body).events)).toContain("before-the-crash");
  });
});

describe("org recording settings", () => {
  it("defaults on, 30 days, no input; PATCH validates; off: new sessions are not recorded, older ones keep theirs; input recorded when asked", async () => {
    const org = await s.org("settings");
    const t = org.token;
    const w = await readyWorkspace(s.url, t);
    expect((await call(s.url, "GET", "/orgs/current/recording", { token: t })).body).toEqual({ enabled: true, retention_days: 30, input: false });
    for (const bad of [{ retention_days: 0 }, { enabled: "yes" }, { other: 1 }, { retention_days: 1.5 }]) {
      const r = await call(s.url, "PATCH", "/orgs/current/recording", { token: t, body: bad });
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBeTruthy();
    }
    expect((await call(s.url, "PATCH", "/orgs/current/recording", { token: t, raw: "nope", contentType: "text/plain" })).status).toBeLessThan(500);
    const rec = async () => {
      const c = await openShell(s.wsUrl, w, { token: t });
      await c.run("echo typed-here");
      c.send("exit\r");
      await c.closed;
      return c.hello!.session;
    };
    const rowOf = (sid: string) =>
      waitFor(async () => {
        const r = await call(s.url, "GET", `/workspaces/${w}/terminal/sessions`, { token: t });
        const x = r.body.sessions.find((y: { id: string }) => y.id === sid);
        return x?.closed_at && (x.recording === null || x.recording.complete) ? x : null;
      }, 15_000);
    const before = await rec();
    expect((await rowOf(before)).recording).not.toBeNull();
    expect((await call(s.url, "PATCH", "/orgs/current/recording", { token: t, body: { enabled: false } })).body).toEqual({ enabled: false, retention_days: 30, input: false });
    const off = await rec();
    expect((await rowOf(off)).recording).toBeNull();
    expect((await call(s.url, "GET", `/workspaces/${w}/terminal/sessions/${off}/recording`, { token: t })).status).toBe(404);
    // Recorded before the change: still there.
    expect((await call(s.url, "GET", `/workspaces/${w}/terminal/sessions/${before}/recording`, { token: t })).status).toBe(200);
    await call(s.url, "PATCH", "/orgs/current/recording", { token: t, body: { enabled: true, input: true } });
    const withInput = await rec();
    await rowOf(withInput);
    const { events } = parseCast((await call(s.url, "GET", `/workspaces/${w}/terminal/sessions/${withInput}/recording`, { token: t })).body);
    const input = events.filter((e) => e[1] === "i").map((e) => e[2]).join("");
    expect(input).toContain("echo typed-here");
    // Another org's settings are its own.
    expect((await call(s.url, "GET", "/orgs/current/recording", { token })).body.input).toBe(false);
  });

  it("the retention sweep deletes recordings older than the org's retention (injectable clock), and only those", async () => {
    const org = await s.org("retention");
    const t = org.token;
    const w = await readyWorkspace(s.url, t);
    await call(s.url, "PATCH", "/orgs/current/recording", { token: t, body: { retention_days: 2 } });
    const c = await openShell(s.wsUrl, w, { token: t });
    const sid = c.hello!.session;
    await c.run("echo keep-me");
    c.send("exit\r");
    await c.closed;
    const row = await waitFor(async () => {
      const r = await call(s.url, "GET", `/workspaces/${w}/terminal/sessions`, { token: t });
      const x = r.body.sessions.find((y: { id: string }) => y.id === sid);
      return x?.recording?.complete ? x : null;
    }, 15_000);
    const closedAt = Date.parse(row.closed_at);
    const file = join(dir, org.orgId, w, `${sid}.tape`);
    expect(existsSync(file)).toBe(true);
    const day = 86_400_000;
    await s.api.sweepExpiredRecordings(new Date(closedAt + 2 * day - 60_000));
    expect(existsSync(file)).toBe(true);
    expect((await call(s.url, "GET", `/workspaces/${w}/terminal/sessions/${sid}/recording`, { token: t })).status).toBe(200);
    await s.api.sweepExpiredRecordings(new Date(closedAt + 2 * day + 60_000));
    expect(existsSync(file)).toBe(false);
    expect((await call(s.url, "GET", `/workspaces/${w}/terminal/sessions/${sid}/recording`, { token: t })).status).toBe(404);
    const after = (await call(s.url, "GET", `/workspaces/${w}/terminal/sessions`, { token: t })).body.sessions.find((y: { id: string }) => y.id === sid);
    expect(after.recording).toBeNull();
  });
});
