/**
 * Every API node serves the built Canvas at `/` (no CDN: everything from this
 * origin) and the user docs it links to under /docs.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CANVAS_DIST } from "../../apps/canvas/build.ts";
import { ensureCanvasBuilt } from "../../apps/canvas/e2e/browser.ts";
import { startStack, type Stack } from "../helpers/stack.ts";

let s: Stack;
beforeAll(async () => {
  ensureCanvasBuilt();
  s = await startStack({ worker: false });
}, 60_000);
afterAll(() => s?.close());

describe("Canvas static files", () => {
  it("/ is the Canvas page; it loads nothing from another origin; index revalidates, hashed assets are immutable", async () => {
    const res = await fetch(`${s.url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    expect(res.headers.get("cache-control")).toBe("no-cache");
    const html = await res.text();
    expect(html).toContain('<div id="app">');
    expect(html).toContain("Content-Security-Policy");
    const refs = [...html.matchAll(/\b(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThanOrEqual(2);
    for (const r of refs) expect(r.startsWith("/assets/")).toBe(true);
    for (const r of refs) {
      const a = await fetch(`${s.url}${r}`);
      expect(a.status).toBe(200);
      expect(a.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
      const body = await a.text();
      // xterm.js and our code are bundled: no script or stylesheet is fetched from elsewhere at run time.
      expect(body).not.toMatch(/import\s*\(\s*["']https?:/);
      expect(body).not.toMatch(/@import\s+url\(\s*["']?https?:/);
    }
    expect(readFileSync(join(CANVAS_DIST, "index.html"), "utf8")).toBe(html);
  });

  it("/docs serves the user docs as plain text (the EIC link target lives there)", async () => {
    const res = await fetch(`${s.url}/docs/canvas.md`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    expect(await res.text()).toContain("# The Canvas");
    // Nothing outside docs/ through it.
    const out = await fetch(`${s.url}/docs/%2e%2e/package.json`);
    expect(out.status).toBeGreaterThanOrEqual(400);
    expect(await out.text()).not.toContain('"packageManager"');
  });
});
