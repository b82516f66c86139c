import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, waitFor } from "../../../../test/helpers/http.ts";
import { startStack, type Stack } from "../../../../test/helpers/stack.ts";

let s: Stack;
let token: string;
beforeAll(async () => {
  s = await startStack();
  token = (await s.org("a")).token;
});
afterAll(() => s.close());

describe("workspace lifecycle through HTTP (the user journey's curl flow)", () => {
  it("creates, polls without a token until ready, reads, lists, deletes, polls until removed", async () => {
    const created = await call(s.url, "POST", "/workspaces", { token, body: { name: "prod-agent", runtime: "hermes", tier: 2 } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: "prod-agent", runtime: "hermes", tier: 2, status: "provisioning", provider: "local" });
    const id = created.body.id as string;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);

    const t0 = performance.now();
    const polled = await waitFor(async () => {
      const r = await call(s.url, "GET", `/workspaces/${id}`);
      return r.body.status === "ready" ? r : null;
    }, 5000);
    expect(performance.now() - t0).toBeLessThan(5000);
    // Without a token: only id and status.
    expect(polled.body).toEqual({ id, status: "ready" });

    const full = await call(s.url, "GET", `/workspaces/${id}`, { token });
    expect(Object.keys(full.body).sort()).toEqual(
      ["id", "name", "runtime", "tier", "status", "provider", "instance_id", "error", "created_at", "updated_at", "ready_at"].sort(),
    );
    expect(full.body.ready_at).not.toBeNull();

    const list = await call(s.url, "GET", "/workspaces", { token });
    expect(list.body.workspaces.map((w: { id: string }) => w.id)).toContain(id);

    const del = await call(s.url, "DELETE", `/workspaces/${id}`, { token });
    expect(del.status).toBe(202);
    expect(del.body.status).toBe("removing");
    await waitFor(async () => (await call(s.url, "GET", `/workspaces/${id}`)).body.status === "removed", 5000);
    const again = await call(s.url, "DELETE", `/workspaces/${id}`, { token });
    expect(again.status).toBe(202);
    expect(again.body.status).toBe("removed");

    const events = await call(s.url, "GET", `/workspaces/${id}/events`, { token });
    const statuses = events.body.events.filter((e: { type: string }) => e.type === "status");
    expect(statuses.map((e: { to: string }) => e.to)).toEqual(["provisioning", "ready", "removing", "removed"]);
  });
});
