/**
 * The API reference at /reference: Redoc, served by the API from this origin, renders
 * /openapi.json in Chromium under a strict CSP; nothing is fetched from elsewhere.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureCanvasBuilt, launchChromium, type Browser } from "../../apps/canvas/e2e/browser.ts";
import { ROOT } from "../../scripts/processes.ts";
import { startStack, type Stack } from "../helpers/stack.ts";

const SHOTS = join(ROOT, "test-results/browser");
let s: Stack;
let browser: Browser;
beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  ensureCanvasBuilt();
  [s, browser] = await Promise.all([startStack({ worker: false }), launchChromium()]);
}, 60_000);
afterAll(async () => {
  await browser?.close().catch(() => {});
  await s?.close();
});

describe("/reference", () => {
  it("is served with a strict CSP and its script from this origin", async () => {
    const res = await fetch(`${s.url}/reference`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toMatch(/unsafe-eval|https?:/);
    const html = await res.text();
    const scripts = [...html.matchAll(/<script[^>]*src="([^"]+)"/g)].map((m) => m[1]!);
    expect(scripts).toEqual(["/reference/redoc.standalone.js"]);
    const js = await fetch(`${s.url}${scripts[0]}`);
    expect(js.status).toBe(200);
    expect(js.headers.get("content-type")).toMatch(/javascript/);
    expect(Number(js.headers.get("content-length"))).toBeGreaterThan(500_000);
  });

  it("renders every operation of /openapi.json in Chromium, fetching nothing from another origin", { timeout: 60_000 }, async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const foreign: string[] = [];
    const errors: string[] = [];
    page.on("requestfinished", (r) => {
      if (!r.url().startsWith(s.url) && !r.url().startsWith("blob:") && !r.url().startsWith("data:")) foreign.push(r.url());
    });
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${s.url}/reference`);
    await page.getByText("Molecule workspaces API").first().waitFor({ timeout: 20_000 });
    const doc = await (await fetch(`${s.url}/openapi.json`)).json();
    const summaries = Object.values(doc.paths as Record<string, Record<string, { summary?: string }>>).flatMap((item) =>
      Object.values(item)
        .map((op) => op?.summary)
        .filter((x): x is string => typeof x === "string"),
    );
    const body = (await page.textContent("body")) ?? "";
    for (const sum of summaries) expect(body, sum).toContain(sum);
    await page.screenshot({ path: join(SHOTS, "reference.png") });
    expect(foreign).toEqual([]);
    expect(errors).toEqual([]);
    await page.close();
  });

  it("the Canvas links to it (new tab, noopener)", async () => {
    const page = await browser.newPage();
    const org = await s.org("ref");
    await page.addInitScript((t) => sessionStorage.setItem("molecule.orgToken", t), org.token);
    await page.goto(s.url);
    const link = page.getByRole("link", { name: "API reference" });
    await link.waitFor();
    expect(await link.getAttribute("href")).toBe("/reference");
    expect(await link.getAttribute("rel")).toContain("noopener");
    await page.close();
  });
});
