import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { schema } from "@molecule/shared";
import { call } from "../../../../test/helpers/http.ts";
import { startStack, type Stack } from "../../../../test/helpers/stack.ts";

let s: Stack;
let token: string;
let orgId: string;
beforeAll(async () => {
  s = await startStack({ worker: false });
  const o = await s.org("sessions-pages");
  token = o.token;
  orgId = o.orgId;
});
afterAll(() => s?.close());

async function pages(path: string, key: string, limit: number): Promise<{ items: { id: string }[]; pages: number }> {
  const items: { id: string }[] = [];
  let cursor: string | null = null;
  let n = 0;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const r = await call(s.url, "GET", `${path}${sep}limit=${limit}${cursor ? `&cursor=${cursor}` : ""}`, { token });
    expect(r.status).toBe(200);
    items.push(...r.body[key]);
    cursor = r.body.next_cursor;
    n++;
  } while (cursor && n < 100);
  return { items, pages: n };
}

describe("cursor pagination", () => {
  it("GET /workspaces/{id}/terminal/sessions goes past 200, newest first, each session once (ties within a millisecond included)", async () => {
    const ws = (await call(s.url, "POST", "/workspaces", { token, body: { name: "audited" } })).body.id as string;
    // 450 sessions; many share a millisecond or even a microsecond, which a millisecond cursor would skip or repeat.
    const base = Date.parse("2026-01-01T00:00:00Z");
    const rows = Array.from({ length: 450 }, (_, i) => ({
      id: crypto.randomUUID(),
      orgId,
      workspaceId: ws,
      provider: "local",
      openedAt: new Date(base + Math.floor(i / 7)),
    }));
    await s.db.db.insert(schema.terminalSessions).values(rows);
    // Sub-millisecond spread for some of them (a JS Date cannot say this).
    await s.db.sql`update terminal_sessions set opened_at = opened_at + (random() * interval '900 microseconds') where workspace_id = ${ws} and random() < 0.5`;
    const { items, pages: n } = await pages(`/workspaces/${ws}/terminal/sessions`, "sessions", 64);
    expect(items).toHaveLength(450);
    expect(n).toBe(Math.ceil(450 / 64));
    expect(new Set(items.map((x) => x.id))).toEqual(new Set(rows.map((r) => r.id)));
    const expected = await s.db.sql`select id from terminal_sessions where workspace_id = ${ws} order by opened_at desc, id desc`;
    expect(items.map((x) => x.id)).toEqual(expected.map((r) => r.id));
    // Default page: 50; the largest page is 200.
    const first = await call(s.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token });
    expect(first.body.sessions).toHaveLength(50);
    expect((await call(s.url, "GET", `/workspaces/${ws}/terminal/sessions?limit=200`, { token })).body.sessions).toHaveLength(200);
    for (const q of ["limit=201", "cursor=abc", `cursor=${Buffer.from("2026-01-01T00:00:00Z|not-a-uuid").toString("base64url")}`, "x=1"]) {
      const r = await call(s.url, "GET", `/workspaces/${ws}/terminal/sessions?${q}`, { token });
      expect(r.status, q).toBe(400);
    }
  });

  it("GET /workspaces pages workspaces created within one millisecond without skipping any", async () => {
    const ids = (
      await s.db.db
        .insert(schema.workspaces)
        .values(Array.from({ length: 30 }, (_, i) => ({ orgId, name: `tie-${i}`, runtime: "hermes", tier: 2, status: "ready", provider: "local" })))
        .returning({ id: schema.workspaces.id })
    ).map((r) => r.id);
    // One transaction: one now() for all; spread them over a single millisecond.
    await s.db.sql`update workspaces set created_at = '2026-02-02T00:00:00.000Z'::timestamptz + (random() * interval '999 microseconds') where id = any(${ids}::uuid[])`;
    const { items } = await pages("/workspaces", "workspaces", 4);
    const got = items.map((x) => x.id).filter((id) => ids.includes(id));
    expect(got).toHaveLength(30);
    expect(new Set(got).size).toBe(30);
  });
});
