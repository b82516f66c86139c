import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../../../test/helpers/http.ts";
import { startStack, type Stack } from "../../../../test/helpers/stack.ts";

let s: Stack;
let token: string;
let other: string;
beforeAll(async () => {
  s = await startStack({ worker: false });
  token = (await s.org("idem")).token;
  other = (await s.org("idem-other")).token;
});
afterAll(() => s?.close());

const create = (body: unknown, key?: string, t = token) =>
  call(s.url, "POST", "/workspaces", { token: t, body, headers: key === undefined ? {} : { "idempotency-key": key } });
const countOf = async (name: string) =>
  Number((await s.db.sql`select count(*)::int as n from workspaces where name = ${name}`)[0]!.n);

describe("Idempotency-Key on POST /workspaces", () => {
  it("a retry with the same key and body returns the first workspace (201, same id, Idempotent-Replayed); only one is made", async () => {
    const key = `k-${crypto.randomUUID()}`;
    const first = await create({ name: "idem-a", runtime: "hermes", tier: 2 }, key);
    expect(first.status).toBe(201);
    expect(first.headers.get("idempotent-replayed")).toBeNull();
    // The same request, its keys in another order and the defaults spelled out: the same body.
    const again = await create({ tier: 2, runtime: "hermes", name: "idem-a" }, key);
    expect(again.status).toBe(201);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(again.headers.get("location")).toBe(`/workspaces/${first.body.id}`);
    expect(again.body.id).toBe(first.body.id);
    expect(await countOf("idem-a")).toBe(1);
  });

  it("the same key with a different body is a 422 idempotency_key_reused, and nothing is made", async () => {
    const key = crypto.randomUUID();
    expect((await create({ name: "idem-b" }, key)).status).toBe(201);
    const changed = await create({ name: "idem-b2" }, key);
    expect(changed.status).toBe(422);
    expect(changed.body.error.code).toBe("idempotency_key_reused");
    expect(changed.body.error.message).toMatch(/different request body/);
    expect(await countOf("idem-b2")).toBe(0);
  });

  it("concurrent requests with one key make one workspace and all get its id", async () => {
    const key = crypto.randomUUID();
    const all = await Promise.all(Array.from({ length: 6 }, () => create({ name: "idem-race" }, key)));
    expect(all.map((r) => r.status)).toEqual(Array(6).fill(201));
    expect(new Set(all.map((r) => r.body.id)).size).toBe(1);
    expect(all.filter((r) => r.headers.get("idempotent-replayed") === "true")).toHaveLength(5);
    expect(await countOf("idem-race")).toBe(1);
  });

  it("keys are per organisation; without a key every create is a new workspace", async () => {
    const key = crypto.randomUUID();
    const a = await create({ name: "idem-org" }, key);
    const b = await create({ name: "idem-org" }, key, other);
    expect(b.status).toBe(201);
    expect(b.body.id).not.toBe(a.body.id);
    expect(b.headers.get("idempotent-replayed")).toBeNull();
    await create({ name: "idem-nokey" });
    await create({ name: "idem-nokey" });
    expect(await countOf("idem-nokey")).toBe(2);
  });

  it("a key counts for 24 h: after that the same key makes a new workspace", async () => {
    const key = crypto.randomUUID();
    const first = await create({ name: "idem-old" }, key);
    await s.db.db.execute(sql`update idempotency_keys set created_at = now() - interval '23 hours 59 minutes' where key = ${key}`);
    expect((await create({ name: "idem-old" }, key)).body.id).toBe(first.body.id);
    await s.db.db.execute(sql`update idempotency_keys set created_at = now() - interval '24 hours 1 minute' where key = ${key}`);
    const later = await create({ name: "idem-old-2" }, key);
    expect(later.status).toBe(201);
    expect(later.headers.get("idempotent-replayed")).toBeNull();
    expect(later.body.id).not.toBe(first.body.id);
    // The key now names the new workspace.
    expect((await create({ name: "idem-old-2" }, key)).body.id).toBe(later.body.id);
  });

  it("a malformed key is a 400 naming the header; an invalid body is still a 400 for the body", async () => {
    for (const bad of ["", "a\tb", "x".repeat(256), "é"]) {
      const r = await call(s.url, "POST", "/workspaces", { token, body: { name: "idem-bad" }, headers: { "idempotency-key": bad } });
      expect(r.status, JSON.stringify(bad)).toBe(400);
      expect(r.body.error.details[0].field).toBe("Idempotency-Key");
    }
    const r = await create({ name: "" }, crypto.randomUUID());
    expect(r.status).toBe(400);
    expect(r.body.error.details[0].field).toBe("name");
    expect(await countOf("idem-bad")).toBe(0);
  });
});
