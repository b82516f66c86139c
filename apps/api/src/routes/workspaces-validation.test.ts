import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../../../test/helpers/http.ts";
import { startStack, type Stack } from "../../../../test/helpers/stack.ts";

let s: Stack;
let token: string;
beforeAll(async () => {
  s = await startStack({ worker: false });
  token = (await s.org("v")).token;
});
afterAll(() => s.close());

const post = (body: unknown) => call(s.url, "POST", "/workspaces", { token, body });

describe("POST /workspaces validation", () => {
  it("defaults runtime to langgraph and tier to 2", async () => {
    const r = await post({ name: "defaults" });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ runtime: "langgraph", tier: 2, status: "provisioning" });
  });

  it.each([
    [{}, "name"],
    [{ name: "" }, "name"],
    [{ name: "x".repeat(256) }, "name"],
    [{ name: "bad\u0007bell" }, "name"],
    [{ name: 42 }, "name"],
    [{ name: "ok", runtime: "cobol" }, "runtime"],
    [{ name: "ok", tier: 0 }, "tier"],
    [{ name: "ok", tier: 5 }, "tier"],
    [{ name: "ok", tier: 2.5 }, "tier"],
    [{ name: "ok", tier: "2" }, "tier"],
  ])("rejects %j naming the field %s", async (body, field) => {
    const r = await post(body);
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("validation_failed");
    expect(r.body.error.details.map((d: { field: string }) => d.field)).toContain(field);
  });

  it("names every bad field at once, and rejects unknown fields", async () => {
    const r = await post({ name: "", runtime: "x", tier: 9, colour: "red" });
    expect(r.status).toBe(400);
    const text = JSON.stringify(r.body.error.details);
    for (const f of ["name", "runtime", "tier"]) expect(r.body.error.details.map((d: { field: string }) => d.field)).toContain(f);
    expect(text).toContain("colour");
  });

  it("answers 400 for malformed JSON, 415 for a non-JSON body, 413 for an oversized one", async () => {
    const bad = await call(s.url, "POST", "/workspaces", { token, raw: '{"name": ', contentType: "application/json" });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ code: "bad_json" });
    const form = await call(s.url, "POST", "/workspaces", { token, raw: "name=x", contentType: "application/x-www-form-urlencoded" });
    expect(form.status).toBe(415);
    expect(form.body.error.code).toBe("unsupported_media_type");
    const big = await call(s.url, "POST", "/workspaces", { token, raw: JSON.stringify({ name: "x".repeat(70 * 1024) }), contentType: "application/json" });
    expect(big.status).toBe(413);
    expect(big.body.error.code).toBe("payload_too_large");
  });

  it("answers 400 (not 500) for malformed ids everywhere", async () => {
    for (const [m, p] of [
      ["GET", "/workspaces/not-a-uuid"],
      ["GET", "/workspaces/123"],
      ["DELETE", "/workspaces/zzz"],
      ["POST", "/workspaces/1'%20or%201=1/restart"],
      ["GET", "/workspaces/abc/terminal/sessions"],
    ] as const) {
      const r = await call(s.url, m, p, { token });
      expect(r.status, `${m} ${p}`).toBe(400);
      expect(r.body.error.code).toBe("bad_id");
    }
    // Without a token too (the public status read validates first).
    expect((await call(s.url, "GET", "/workspaces/nope")).status).toBe(400);
  });

  it("validates list queries and cursors", async () => {
    expect((await call(s.url, "GET", "/workspaces?limit=0", { token })).status).toBe(400);
    expect((await call(s.url, "GET", "/workspaces?status=sleeping", { token })).status).toBe(400);
    expect((await call(s.url, "GET", "/workspaces?cursor=garbage", { token })).status).toBe(400);
    expect((await call(s.url, "GET", "/workspaces?bogus=1", { token })).status).toBe(400);
  });

  it("unknown routes are a JSON 404", async () => {
    const r = await call(s.url, "GET", "/nope", { token });
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe("not_found");
  });
});

describe("rate limit", () => {
  it("answers 429 with Retry-After when an org creates too fast, without affecting other orgs", async () => {
    const limited = await startStack({ worker: false, api: { createRatePerMin: 3 } });
    try {
      const a = (await limited.org("rl-a")).token;
      const b = (await limited.org("rl-b")).token;
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) {
        statuses.push((await call(limited.url, "POST", "/workspaces", { token: a, body: { name: `n${i}` } })).status);
      }
      expect(statuses).toEqual([201, 201, 201, 429, 429]);
      const r = await call(limited.url, "POST", "/workspaces", { token: a, body: { name: "again" } });
      expect(r.body.error.code).toBe("rate_limited");
      expect(Number(r.headers.get("retry-after"))).toBeGreaterThan(0);
      expect((await call(limited.url, "POST", "/workspaces", { token: b, body: { name: "other" } })).status).toBe(201);
    } finally {
      await limited.close();
    }
  });
});
