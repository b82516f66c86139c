import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { schema } from "@molecule/shared";
import { call, waitFor } from "../../../../test/helpers/http.ts";
import { startStack, type Stack } from "../../../../test/helpers/stack.ts";

let s: Stack;
let token: string;
beforeAll(async () => {
  // A provider that takes a while, as a real one does: its steps are there to watch.
  s = await startStack({ local: { provisionDelayMs: 400 } });
  token = (await s.org("events")).token;
});
afterAll(() => s?.close());

interface Ev {
  id: number;
  type: string;
  from: string | null;
  to: string;
  step: string | null;
  message: string | null;
  at: string;
}
async function allEvents(id: string, limit: number): Promise<{ events: Ev[]; pages: number }> {
  const events: Ev[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const r = await call(s.url, "GET", `/workspaces/${id}/events?limit=${limit}${cursor ? `&cursor=${cursor}` : ""}`, { token });
    expect(r.status).toBe(200);
    expect(r.body.events.length).toBeLessThanOrEqual(limit);
    events.push(...r.body.events);
    cursor = r.body.next_cursor;
    pages++;
  } while (cursor && pages < 50);
  return { events, pages };
}

describe("GET /workspaces/{id}/events", () => {
  it("records the provisioning steps in order, each with a time, while the workspace is provisioning", async () => {
    const id = (await call(s.url, "POST", "/workspaces", { token, body: { name: "steps" } })).body.id as string;
    // Mid-way (the provider is in its delay) the current step is already visible.
    const mid = await waitFor(async () => {
      const r = await call(s.url, "GET", `/workspaces/${id}/events`, { token });
      return r.body.events.some((e: Ev) => e.step === "creating_sandbox") ? r.body.events : null;
    }, 5000, 20);
    expect(mid.map((e: Ev) => e.step)).toEqual(["queued", "started", "creating_sandbox"]);
    expect((await call(s.url, "GET", `/workspaces/${id}`, { token })).body.status).toBe("provisioning");
    await waitFor(async () => (await call(s.url, "GET", `/workspaces/${id}`)).body.status === "ready", 10_000);
    const { events } = await allEvents(id, 100);
    expect(events.map((e) => [e.type, e.step])).toEqual([
      ["status", "queued"],
      ["step", "started"],
      ["step", "creating_sandbox"],
      ["status", "ready"],
    ]);
    expect(events[3]).toMatchObject({ from: "provisioning", to: "ready" });
    const times = events.map((e) => Date.parse(e.at));
    expect(times.every((t, i) => i === 0 || t >= times[i - 1]!)).toBe(true);
    // The provider's delay lies between the sandbox step and ready.
    expect(times[3]! - times[2]!).toBeGreaterThanOrEqual(350);
  });

  it("pages with a cursor, oldest first, every event exactly once; a bad cursor or limit is a 400", async () => {
    const id = (await call(s.url, "POST", "/workspaces", { token, body: { name: "many-events" } })).body.id as string;
    await waitFor(async () => (await call(s.url, "GET", `/workspaces/${id}`)).body.status === "ready", 10_000);
    // A long history (many restarts' worth) written directly: 250 more events.
    await s.db.db.insert(schema.workspaceEvents).values(
      Array.from({ length: 250 }, (_, i) => ({ workspaceId: id, fromStatus: "ready", toStatus: "ready", step: "started", message: `n${i}` })),
    );
    const paged = await allEvents(id, 37);
    expect(paged.events).toHaveLength(254);
    expect(paged.pages).toBe(Math.ceil(254 / 37));
    const ids = paged.events.map((e) => e.id);
    expect(new Set(ids).size).toBe(254);
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);
    expect(paged.events.slice(4).map((e) => e.message)).toEqual(Array.from({ length: 250 }, (_, i) => `n${i}`));
    // Default page: 100, with a cursor to go on.
    const first = await call(s.url, "GET", `/workspaces/${id}/events`, { token });
    expect(first.body.events).toHaveLength(100);
    expect(typeof first.body.next_cursor).toBe("string");
    for (const q of ["cursor=nope", "limit=0", "limit=501", "limit=x", "extra=1", `cursor=${Buffer.from("e-1").toString("base64url")}`]) {
      const r = await call(s.url, "GET", `/workspaces/${id}/events?${q}`, { token });
      expect(r.status, q).toBe(400);
      expect(r.body.error.code).toBe("validation_failed");
    }
  });
});
