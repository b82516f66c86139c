import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../../test/helpers/http.ts";
import { startStack, type Stack } from "../../../test/helpers/stack.ts";
import { NOT_IN_OPENAPI } from "./openapi.ts";

let s: Stack;
beforeAll(async () => {
  s = await startStack({ worker: false });
});
afterAll(() => s?.close());

interface Layer {
  route?: { path: string | string[]; methods: Record<string, boolean | undefined> };
  handle?: { stack?: Layer[] };
}

/** Every "METHOD /path" the Express app routes (paths in OpenAPI's {param} form). */
function registeredRoutes(stack: readonly Layer[]): string[] {
  const out: string[] = [];
  for (const layer of stack) {
    if (layer.route) {
      for (const path of [layer.route.path].flat()) {
        for (const [method, on] of Object.entries(layer.route.methods)) {
          if (on && method !== "_all") out.push(`${method.toUpperCase()} ${path.replace(/:(\w+)/g, "{$1}")}`);
        }
      }
    } else if (layer.handle?.stack) {
      out.push(...registeredRoutes(layer.handle.stack));
    }
  }
  return out;
}

const METHODS = ["get", "put", "post", "delete", "patch", "head", "options"];

describe("the OpenAPI document covers the API", () => {
  it("every registered route is in /openapi.json (or named in NOT_IN_OPENAPI), and every operation there is a route", async () => {
    const doc = (await call(s.url, "GET", "/openapi.json")).body as { paths: Record<string, Record<string, unknown>> };
    const documented = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.keys(item)
        .filter((m) => METHODS.includes(m))
        .map((m) => `${m.toUpperCase()} ${path}`),
    );
    const routes = registeredRoutes((s.api.app as unknown as { router: { stack: Layer[] } }).router.stack);
    expect(routes.length).toBeGreaterThan(10);
    const missing = routes.filter((r) => !documented.includes(r) && !NOT_IN_OPENAPI.includes(r));
    expect(missing, "routes the OpenAPI document lacks").toEqual([]);
    const stale = documented.filter((d) => !routes.includes(d));
    expect(stale, "operations with no route").toEqual([]);
    expect(documented).toContain("GET /workspaces/{id}/events");
  });

  it("every operation has a unique operationId, a summary and declared responses", async () => {
    const doc = (await call(s.url, "GET", "/openapi.json")).body as { paths: Record<string, Record<string, { operationId?: string; summary?: string; responses?: object }>> };
    const ops = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.entries(item)
        .filter(([m]) => METHODS.includes(m))
        .map(([m, op]) => ({ at: `${m} ${path}`, ...op })),
    );
    for (const op of ops) {
      expect(op.operationId, op.at).toMatch(/^[a-z][A-Za-z]+$/);
      expect(op.summary, op.at).toBeTruthy();
      expect(Object.keys(op.responses ?? {}).length, op.at).toBeGreaterThan(0);
    }
    expect(new Set(ops.map((o) => o.operationId)).size).toBe(ops.length);
  });

  it("the paginated lists and the Idempotency-Key are described", async () => {
    const doc = (await call(s.url, "GET", "/openapi.json")).body;
    const names = (op: { parameters?: { name: string }[] }) => (op.parameters ?? []).map((p) => p.name);
    expect(names(doc.paths["/workspaces/{id}/events"].get)).toEqual(expect.arrayContaining(["limit", "cursor"]));
    expect(names(doc.paths["/workspaces/{id}/terminal/sessions"].get)).toEqual(expect.arrayContaining(["limit", "cursor"]));
    expect(names(doc.paths["/workspaces"].post)).toContain("Idempotency-Key");
    expect(doc.paths["/workspaces"].post.responses["422"]).toBeDefined();
    expect(doc.components.schemas.EventPage.properties.next_cursor).toBeDefined();
  });
});
