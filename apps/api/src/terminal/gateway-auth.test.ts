import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, readyWorkspace } from "../../../../test/helpers/http.ts";
import { startStack, type Stack } from "../../../../test/helpers/stack.ts";
import { openShell, TermClient } from "../../../../test/helpers/term-client.ts";

let s: Stack;
let a: { orgId: string; token: string };
let b: { orgId: string; token: string };
let wsA: string;
beforeAll(async () => {
  s = await startStack({ api: { allowedOrigins: ["https://canvas.example"] } });
  a = await s.org("ga");
  b = await s.org("gb");
  wsA = await readyWorkspace(s.url, a.token);
});
afterAll(() => s.close());

const refusal = async (ws: string, o: ConstructorParameters<typeof TermClient>[2]) => {
  const c = new TermClient(s.wsUrl, ws, o);
  return c.refused;
};

describe("terminal upgrade: refused before the upgrade with the REST error body", () => {
  it("401 without credentials, with a bad token, or a bad ticket", async () => {
    for (const o of [{}, { token: "mol_bad" }, { ticket: "tkt_nope" }]) {
      const r = await refusal(wsA, o);
      expect(r?.status).toBe(401);
      expect(r?.body.error.code).toBe("unauthorized");
    }
  });

  it("404 for another org's workspace, exactly like a missing one; 400 for a malformed id", async () => {
    const foreign = await refusal(wsA, { token: b.token });
    const missing = await refusal("00000000-0000-4000-8000-000000000000", { token: b.token });
    expect(foreign?.status).toBe(404);
    expect(foreign?.body).toEqual(missing?.body);
    expect((await refusal("nope", { token: a.token }))?.status).toBe(400);
  });

  it("403 for an Origin not in the allowed list; same-origin and listed origins pass", async () => {
    const bad = await refusal(wsA, { token: a.token, origin: "https://evil.example" });
    expect(bad?.status).toBe(403);
    expect(bad?.body.error.code).toBe("forbidden");
    const listed = await openShell(s.wsUrl, wsA, { token: a.token, origin: "https://canvas.example" });
    await listed.close();
    const same = await openShell(s.wsUrl, wsA, { token: a.token, origin: s.url });
    await same.close();
  });

  it("400 for out-of-range sizes in the query", async () => {
    expect((await refusal(wsA, { token: a.token, cols: 5000 }))?.status).toBe(400);
  });
});

describe("tickets", () => {
  it("a ticket opens a shell once; a second use is 401; it is bound to its workspace", async () => {
    const t = await call(s.url, "POST", `/workspaces/${wsA}/terminal/tickets`, { token: a.token });
    expect(t.status).toBe(201);
    expect(t.body.ticket).toMatch(/^tkt_/);
    const c = await openShell(s.wsUrl, wsA, { ticket: t.body.ticket });
    expect((await c.run("echo $MOLECULE_WS_ID")).trim()).toBe(wsA);
    await c.close();
    expect((await refusal(wsA, { ticket: t.body.ticket }))?.status).toBe(401);

    const other = await readyWorkspace(s.url, a.token, "other");
    const t2 = await call(s.url, "POST", `/workspaces/${other}/terminal/tickets`, { token: a.token });
    expect((await refusal(wsA, { ticket: t2.body.ticket }))?.status).toBe(401);
  });

  it("the audit row records the token that asked for the ticket", async () => {
    const t = await call(s.url, "POST", `/workspaces/${wsA}/terminal/tickets`, { token: a.token });
    const c = await openShell(s.wsUrl, wsA, { ticket: t.body.ticket });
    await c.close();
    const list = await call(s.url, "GET", `/workspaces/${wsA}/terminal/sessions`, { token: a.token });
    expect(list.body.sessions[0].id).toBe(c.hello!.session);
    expect(list.body.sessions[0].token_prefix).toBe(a.token.slice(0, 12));
  });
});
