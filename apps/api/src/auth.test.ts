import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, readyWorkspace } from "../../../test/helpers/http.ts";
import { startStack, type Stack } from "../../../test/helpers/stack.ts";
import { createToken, revokeToken } from "./orgs.ts";

let s: Stack;
let a: { orgId: string; token: string };
let b: { orgId: string; token: string };
let wsA: string;
beforeAll(async () => {
  s = await startStack();
  a = await s.org("a");
  b = await s.org("b");
  wsA = await readyWorkspace(s.url, a.token, "a-ws");
});
afterAll(() => s.close());

describe("authentication", () => {
  it("401 without a token, with a malformed header, with a bad or unknown token", async () => {
    const cases: Record<string, string>[] = [{}, { authorization: "Basic abc" }, { authorization: "Bearer" }, { authorization: "Bearer mol_nope" }, { authorization: `Bearer mol_${"A".repeat(43)}` }];
    for (const headers of cases) {
      const r = await call(s.url, "GET", "/workspaces", { headers });
      expect(r.status, JSON.stringify(headers)).toBe(401);
      expect(r.body.error.code).toBe("unauthorized");
    }
    expect((await call(s.url, "POST", "/workspaces", { body: { name: "x" } })).status).toBe(401);
  });

  it("a revoked token stops working at once", async () => {
    const t = await createToken(s.db.db, a.orgId, "temp");
    expect((await call(s.url, "GET", "/workspaces", { token: t.token })).status).toBe(200);
    expect(await revokeToken(s.db.db, t.tokenId)).toBe(1);
    expect((await call(s.url, "GET", "/workspaces", { token: t.token })).status).toBe(401);
  });

  it("stores tokens only hashed", async () => {
    const rows = await s.db.sql`select hash, prefix from api_tokens where org_id = ${a.orgId}`;
    for (const r of rows) {
      expect(r.hash).toMatch(/^[0-9a-f]{64}$/);
      expect(r.hash).not.toContain(a.token);
      expect(a.token.startsWith(r.prefix) || r.prefix.length === 12).toBe(true);
    }
  });

  it("health and public status need no token", async () => {
    expect((await call(s.url, "GET", "/healthz")).status).toBe(200);
    const ready = await call(s.url, "GET", "/readyz");
    expect(ready.status).toBe(200);
    expect(ready.body.checks).toMatchObject({ postgres: "ok", redis: "ok" });
    expect((await call(s.url, "GET", `/workspaces/${wsA}`)).body).toEqual({ id: wsA, status: "ready" });
  });
});

describe("org isolation: another org's workspace is a 404, exactly like a missing one", () => {
  it("org B cannot read, list, delete, restart or open tickets for org A's workspace", async () => {
    const missing = await call(s.url, "GET", "/workspaces/00000000-0000-4000-8000-000000000000", { token: b.token });
    const foreign = await call(s.url, "GET", `/workspaces/${wsA}`, { token: b.token });
    expect(foreign.status).toBe(404);
    expect(foreign.body).toEqual(missing.body);
    expect((await call(s.url, "DELETE", `/workspaces/${wsA}`, { token: b.token })).status).toBe(404);
    expect((await call(s.url, "POST", `/workspaces/${wsA}/restart`, { token: b.token })).status).toBe(404);
    expect((await call(s.url, "POST", `/workspaces/${wsA}/terminal/tickets`, { token: b.token })).status).toBe(404);
    expect((await call(s.url, "GET", `/workspaces/${wsA}/terminal/sessions`, { token: b.token })).status).toBe(404);
    expect((await call(s.url, "GET", `/workspaces/${wsA}/events`, { token: b.token })).status).toBe(404);
    const list = await call(s.url, "GET", "/workspaces", { token: b.token });
    expect(list.body.workspaces.map((w: { id: string }) => w.id)).not.toContain(wsA);
    // And A's workspace is untouched.
    expect((await call(s.url, "GET", `/workspaces/${wsA}`, { token: a.token })).body.status).toBe("ready");
  });
});

describe("public status read can be turned off", () => {
  it("answers 401 without a token when MOLECULE_PUBLIC_STATUS is off", async () => {
    const closed = await startStack({ worker: false, api: { publicStatus: false } });
    try {
      const t = (await closed.org("p")).token;
      const id = (await call(closed.url, "POST", "/workspaces", { token: t, body: { name: "p" } })).body.id;
      expect((await call(closed.url, "GET", `/workspaces/${id}`)).status).toBe(401);
      expect((await call(closed.url, "GET", `/workspaces/${id}`, { token: t })).status).toBe(200);
    } finally {
      await closed.close();
    }
  });
});
