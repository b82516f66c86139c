import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { call, waitFor } from "../../../test/helpers/http.ts";
import { startStack, type Stack } from "../../../test/helpers/stack.ts";
import { createLocalProvider, ProviderError, type Provider } from "./providers/index.ts";

const stacks: Stack[] = [];
afterAll(async () => {
  for (const s of stacks) await s.close();
});

/** The real local provider, with the first `n` creates failing transiently (as a flaky backend would). */
function flaky(root: string, n: number): Provider & { calls: number } {
  const real = createLocalProvider({ root, bwrap: "off", shell: "/bin/bash" });
  const p = {
    ...real,
    calls: 0,
    async create(ws: Parameters<Provider["create"]>[0], ctx: Parameters<Provider["create"]>[1]) {
      p.calls++;
      if (p.calls <= n) throw new ProviderError("backend busy, try again", true);
      return real.create(ws, ctx);
    },
  };
  return p;
}

describe("provider errors", () => {
  it("transient errors are retried with backoff until the workspace is ready", async () => {
    const root = mkdtempSync(join(tmpdir(), "molecule-flaky-"));
    const provider = flaky(root, 2);
    const s = await startStack({ providers: { local: provider } });
    stacks.push(s);
    const t = (await s.org("flaky")).token;
    const id = (await call(s.url, "POST", "/workspaces", { token: t, body: { name: "flaky" } })).body.id;
    await waitFor(async () => (await call(s.url, "GET", `/workspaces/${id}`)).body.status === "ready", 15_000);
    expect(provider.calls).toBe(3);
    rmSync(root, { recursive: true, force: true });
  });

  it("a permanent error fails the workspace with the provider's message, without retrying", async () => {
    // A sandbox root that is a file: the local provider cannot create anything under it.
    const file = join(mkdtempSync(join(tmpdir(), "molecule-perm-")), "not-a-dir");
    writeFileSync(file, "");
    const s = await startStack({ local: { root: file } });
    stacks.push(s);
    const t = (await s.org("perm")).token;
    const id = (await call(s.url, "POST", "/workspaces", { token: t, body: { name: "perm" } })).body.id;
    const w = await waitFor(async () => {
      const r = await call(s.url, "GET", `/workspaces/${id}`, { token: t });
      return r.body.status === "failed" ? r.body : null;
    }, 10_000);
    expect(w.error).toMatch(/cannot create the sandbox directory under .*not-a-dir: (ENOTDIR|EEXIST)/);
    const events = await call(s.url, "GET", `/workspaces/${id}/events`, { token: t });
    const statuses = events.body.events.filter((e: { type: string }) => e.type === "status");
    expect(statuses.map((e: { to: string }) => e.to)).toEqual(["provisioning", "failed"]);
    // The failing step is named, with the provider's message.
    expect(events.body.events.map((e: { step: string }) => e.step)).toEqual(["queued", "started", "creating_sandbox", "failed"]);
    expect(events.body.events.at(-1).message).toMatch(/cannot create the sandbox directory/);
    // A failed workspace can be restarted (and fails again here, with the same clear message).
    expect((await call(s.url, "POST", `/workspaces/${id}/restart`, { token: t })).status).toBe(202);
    await waitFor(async () => (await call(s.url, "GET", `/workspaces/${id}`)).body.status === "failed", 10_000);
  });

  it("worker concurrency is its session capacity: beyond it, a session waits and then gets no_capacity", async () => {
    const s = await startStack({ worker: { capacity: 1 }, api: { claimTimeoutMs: 1000 } });
    stacks.push(s);
    const t = (await s.org("cap1")).token;
    const { readyWorkspace } = await import("../../../test/helpers/http.ts");
    const { openShell, TermClient } = await import("../../../test/helpers/term-client.ts");
    const id = await readyWorkspace(s.url, t);
    const first = await openShell(s.wsUrl, id, { token: t });
    const second = new TermClient(s.wsUrl, id, { token: t });
    expect((await second.waitMessage("error", 5000)).code).toBe("no_capacity");
    expect((await second.closed).code).toBe(4503);
    expect((await first.run("echo still-mine")).trim()).toBe("still-mine");
    await first.close();
    const third = await openShell(s.wsUrl, id, { token: t });
    expect((await third.run("echo freed")).trim()).toBe("freed");
    await third.close();
  });
});
