import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sessionKeys } from "@molecule/shared";
import { call, readyWorkspace, waitFor } from "../../../../test/helpers/http.ts";
import { startStack, type Stack } from "../../../../test/helpers/stack.ts";
import { loggedText } from "../../../../test/helpers/session-log.ts";
import { openShell, TermClient } from "../../../../test/helpers/term-client.ts";
import { processAlive } from "../../../../test/helpers/procs.ts";
import { createLocalProvider } from "../../../terminal-worker/src/providers/index.ts";
import { descendants } from "../../../terminal-worker/src/terminal/kill-tree.ts";

let s: Stack;
let token: string;
let ws: string;
beforeAll(async () => {
  s = await startStack({ worker: { orphanGraceMs: 1500 } });
  token = (await s.org("life")).token;
  ws = await readyWorkspace(s.url, token);
});
afterAll(() => s.close());

/** Host pids of the shell of a session and everything it started. */
function treeOf(sessionId: string): number[] {
  const pty = s.worker!.terminal!.sessions.get(sessionId)?.pid;
  if (!pty) return [];
  return [pty, ...descendants(pty)];
}
const alive = processAlive;

describe("session lifetime", () => {
  it("a client close ends the shell and everything it started within a second", async () => {
    const c = await openShell(s.wsUrl, ws, { token });
    await c.run("sleep 1000 & (trap '' HUP; sleep 999) & setsid sleep 998 & true");
    const tree = treeOf(c.hello!.session);
    expect(tree.length).toBeGreaterThanOrEqual(4);
    const t0 = performance.now();
    await c.close(1001);
    await waitFor(async () => tree.every((p) => !alive(p)), 1000, 20);
    expect(performance.now() - t0).toBeLessThan(1000);
    const row = await waitFor(async () => {
      const r = await call(s.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token });
      const me = r.body.sessions.find((x: { id: string }) => x.id === c.hello!.session);
      return me?.closed_at ? me : null;
    });
    expect(row.close_reason).toBe("client_closed");
  });

  it("a drop without a close frame keeps the shell for the grace period; re-attach gets exactly the missed bytes", async () => {
    const c = await openShell(s.wsUrl, ws, { token });
    await c.run("cd /tmp && echo before-drop");
    const session = c.hello!.session;
    c.send("sleep 0.3; echo produced-while-away-$((6*7))\r");
    await c.waitText("sleep 0.3");
    const offset = c.offset;
    c.drop();
    const tree = treeOf(session);
    expect(tree.length).toBeGreaterThan(0);
    // The shell goes on while nobody watches: its output reaches the replay log...
    await waitFor(async () => (await loggedText(s.redis, s.ns, session)).includes("produced-while-away-42"), 5000);
    // ...and the worker, having seen the session without a viewer twice, keeps it: within the grace period.
    await waitFor(async () => (await s.redis.exists(sessionKeys(s.ns, session).viewer)) === 0, 5000, 20);
    await s.worker!.terminal!.tick();
    await s.worker!.terminal!.tick();
    const r = await openShell(s.wsUrl, ws, { token, session, offset });
    expect(r.hello).toMatchObject({ session, offset });
    await r.waitText("produced-while-away-42");
    // The same shell (its cwd survived), and nothing from before `offset` is sent again.
    expect((await r.run("pwd")).trim()).toBe("/tmp");
    expect(r.text()).not.toContain("before-drop");
    expect(r.text().split("produced-while-away-42").length).toBe(2);
    r.drop();
    // After the grace period with no viewer, the shell is gone.
    await waitFor(async () => tree.every((p) => !alive(p)), 6000, 100);
    // Re-attaching just as the worker records the end: the end it announced before this attach
    // subscribed is read again from the session's state (TerminalBridge.recheck), not waited for.
    const again = new TermClient(s.wsUrl, ws, { token, session, offset: r.offset });
    await again.waitMessage("exit").catch(() => undefined);
    const closed = await Promise.race([again.closed, new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the re-attach to an ended session was not closed within 10 s")), 10_000))]);
    expect([1000, 4404]).toContain(closed.code);
    const row = await waitFor(async () => {
      const x = await call(s.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token });
      const me = x.body.sessions.find((y: { id: string }) => y.id === session);
      return me?.closed_at ? me : null;
    });
    expect(row.close_reason).toBe("orphaned");
  });

  it("shell exit: exit message, close 1000, audit row with exit code and byte counts", async () => {
    const c = await openShell(s.wsUrl, ws, { token });
    await c.run("echo hello");
    c.send("exit 7\r");
    expect(await c.waitMessage("exit")).toEqual({ type: "exit", code: 7, signal: null });
    expect((await c.closed).code).toBe(1000);
    const row = await waitFor(async () => {
      const x = await call(s.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token });
      const me = x.body.sessions.find((y: { id: string }) => y.id === c.hello!.session);
      return me?.closed_at ? me : null;
    });
    expect(row).toMatchObject({ close_reason: "exit", exit_code: 7, worker_id: s.workerId, provider: "local", workspace_id: ws });
    expect(row.bytes_in).toBeGreaterThan(10);
    expect(row.bytes_out).toBe(c.offset);
    expect(row.duration_ms).toBeGreaterThanOrEqual(0);
    expect(row.client_addr).toMatch(/127\.0\.0\.1/);
  });

  it("a re-attach to a session of another workspace or org, or an unknown one, is session_not_found (4404)", async () => {
    const c = await openShell(s.wsUrl, ws, { token });
    const other = await readyWorkspace(s.url, token, "other");
    const wrongWs = new TermClient(s.wsUrl, other, { token, session: c.hello!.session, offset: 0 });
    expect((await wrongWs.waitMessage("error")).code).toBe("session_not_found");
    expect((await wrongWs.closed).code).toBe(4404);
    const unknown = new TermClient(s.wsUrl, ws, { token, session: "00000000-0000-4000-8000-000000000000", offset: 0 });
    expect((await unknown.closed).code).toBe(4404);
    const garbage = new TermClient(s.wsUrl, ws, { token, session: "../../etc", offset: 0 });
    expect((await garbage.closed).code).toBe(4404);
    await c.close();
  });

  it("deleting the workspace ends its sessions with not_ready (4409)", async () => {
    const w = await readyWorkspace(s.url, token, "doomed");
    const c = await openShell(s.wsUrl, w, { token });
    await c.run("true");
    const tree = treeOf(c.hello!.session);
    await call(s.url, "DELETE", `/workspaces/${w}`, { token });
    expect((await c.waitMessage("error")).code).toBe("not_ready");
    expect((await c.closed).code).toBe(4409);
    await waitFor(async () => tree.every((p) => !alive(p)), 2000, 50);
  });

  it("a workspace that is not ready gets not_ready (4409), in v1 and raw mode", async () => {
    const slow = await startStack({ local: { provisionDelayMs: 2000 } });
    try {
      const t = (await slow.org("nr")).token;
      const id = (await call(slow.url, "POST", "/workspaces", { token: t, body: { name: "nr" } })).body.id;
      const v1 = new TermClient(slow.wsUrl, id, { token: t });
      const err = await v1.waitMessage("error");
      expect(err.code).toBe("not_ready");
      expect(err.message).toMatch(/provisioning/);
      expect((await v1.closed).code).toBe(4409);
      const raw = new TermClient(slow.wsUrl, id, { token: t, mode: "raw" });
      expect((await raw.closed).code).toBe(4409);
      expect(raw.text()).toMatch(/^Error: .*provisioning.*\r\n$/);
    } finally {
      await slow.close();
    }
  });
});

describe("capacity and timeouts", () => {
  it("no worker claiming in time gives no_capacity (4503) and the audit row is closed", async () => {
    const lonely = await startStack({ worker: false, api: { claimTimeoutMs: 400 } });
    try {
      const t = (await lonely.org("cap")).token;
      const id = (await call(lonely.url, "POST", "/workspaces", { token: t, body: { name: "cap" } })).body.id;
      await lonely.db.sql`update workspaces set status = 'ready' where id = ${id}`;
      const c = new TermClient(lonely.wsUrl, id, { token: t });
      expect((await c.waitMessage("error")).code).toBe("no_capacity");
      expect((await c.closed).code).toBe(4503);
      const rows = await waitFor(async () => {
        const r = await lonely.db.sql`select close_reason from terminal_sessions where workspace_id = ${id} and closed_at is not null`;
        return r.length ? r : null;
      });
      expect(rows[0]!.close_reason).toBe("no_capacity");
    } finally {
      await lonely.close();
    }
  });

  it("idle timeout (4408) and maximum session length (4410) are announced before the close", async () => {
    const timed = await startStack({ worker: { idleTimeoutMs: 1200, maxSessionMs: 60_000 } });
    try {
      const t = (await timed.org("idle")).token;
      const id = await readyWorkspace(timed.url, t);
      // A command that reads nothing for longer runs to its end: the idle timeout is a shell's.
      const job = new TermClient(timed.wsUrl, id, { token: t, command: ["sh", "-c", "sleep 3; echo done"] });
      const c = await openShell(timed.wsUrl, id, { token: t });
      const err = await c.waitMessage("error", 5000);
      expect(err.code).toBe("idle_timeout");
      expect((await c.closed).code).toBe(4408);
      expect(await job.waitMessage("exit", 10_000)).toMatchObject({ code: 0 });
      expect(job.text()).toContain("done");
      expect((await job.closed).code).toBe(1000);
    } finally {
      await timed.close();
    }
    const capped = await startStack({ worker: { maxSessionMs: 1500 } });
    try {
      const t = (await capped.org("max")).token;
      const id = await readyWorkspace(capped.url, t);
      const c = await openShell(capped.wsUrl, id, { token: t });
      // Keep typing: only the maximum length applies.
      const typing = setInterval(() => c.send(" "), 200);
      const err = await c.waitMessage("error", 5000);
      clearInterval(typing);
      expect(err.code).toBe("session_expired");
      expect((await c.closed).code).toBe(4410);
    } finally {
      await capped.close();
    }
  });
});

describe("a slow start is not a missing worker", () => {
  it("a session claimed in time whose shell takes longer than the claim deadline to start still opens", async () => {
    const root = mkdtempSync(join(tmpdir(), "molecule-slow-start-"));
    const local = createLocalProvider({ root, bwrap: "auto", shell: "/bin/bash" });
    // A provider that needs 1.5 s before the shell can start (an AWS key push, a busy worker).
    const slow = Object.assign(Object.create(local) as typeof local, {
      terminalCommand: async (...args: Parameters<typeof local.terminalCommand>) => {
        await new Promise((r) => setTimeout(r, 1500));
        return local.terminalCommand(...args);
      },
    });
    const st = await startStack({ api: { claimTimeoutMs: 500 }, providers: { local: slow } });
    try {
      const t = (await st.org("slow")).token;
      const w = await readyWorkspace(st.url, t);
      const t0 = performance.now();
      const c = await openShell(st.wsUrl, w, { token: t });
      expect(performance.now() - t0).toBeGreaterThanOrEqual(1500);
      expect((await c.run("echo started-$((40+2))")).trim()).toBe("started-42");
      expect(c.messages.filter((m) => m.type === "error")).toEqual([]);
      await c.close();
    } finally {
      await st.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
