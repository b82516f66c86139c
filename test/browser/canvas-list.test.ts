/**
 * The Canvas workspace list of an organisation with more workspaces than one
 * page (200): the newest are listed with "Show 200 more", older ones come in
 * the API's order, and a workspace pushed off the list by a newer one is not
 * announced as removed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { schema } from "@molecule/shared";
import { ensureCanvasBuilt, launchChromium, type Browser, type Page } from "../../apps/canvas/e2e/browser.ts";
import { startStack, type Stack } from "../helpers/stack.ts";

let s: Stack;
let browser: Browser;
let page: Page;
beforeAll(async () => {
  ensureCanvasBuilt();
  [s, browser] = await Promise.all([startStack({ worker: false }), launchChromium()]);
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("pageerror", (err) => process.stderr.write(`[page error] ${err.message}\n`));
}, 60_000);
afterAll(async () => {
  await browser?.close().catch(() => {});
  await s?.close();
});

/** Names of the listed workspaces, top to bottom. */
const listed = () => page.$$eval("tr[data-workspace] th", (ths) => ths.map((t) => t.textContent ?? ""));

describe("Canvas workspace list beyond one page", () => {
  it("lists the newest 200, shows more on request in the API's order, and does not call a workspace pushed off the list removed", { timeout: 60_000 }, async () => {
    const org = await s.org("many");
    const t0 = Date.now();
    // Rows straight into the database: the create endpoint is rate limited, and these need no shell.
    const row = (i: number) => ({
      orgId: org.orgId,
      name: `ws-${String(i).padStart(3, "0")}`,
      runtime: "hermes",
      tier: 1,
      status: "ready",
      provider: "local",
      createdAt: new Date(t0 - (300 - i) * 1000),
    });
    await s.db.db.insert(schema.workspaces).values(Array.from({ length: 205 }, (_, i) => row(i)));
    const newestFirst = Array.from({ length: 205 }, (_, i) => `ws-${String(204 - i).padStart(3, "0")}`);

    await page.goto(s.url);
    await page.getByLabel("Organisation token").fill(org.token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect.poll(() => listed(), { timeout: 15_000 }).toHaveLength(200);
    expect(await listed()).toEqual(newestFirst.slice(0, 200));
    expect(await page.locator(".workspaces-view p.muted").first().textContent()).toBe("Showing the newest 200 workspaces.");

    const said: string[] = [];
    await page.exposeFunction("recordAnnouncement", (m: string) => said.push(m));
    await page.evaluate(() => {
      new MutationObserver((records) => {
        for (const r of records) for (const n of r.addedNodes) void (window as unknown as { recordAnnouncement(m: string): void }).recordAnnouncement(n.textContent ?? "");
      }).observe(document.getElementById("announcer")!, { childList: true });
    });

    // A newer workspace pushes ws-005 off the newest 200: not listed, but not "removed" either.
    await s.db.db.insert(schema.workspaces).values({ ...row(205), createdAt: new Date(t0) });
    await expect.poll(() => listed(), { timeout: 15_000 }).toContain("ws-205");
    expect(await listed()).toEqual(["ws-205", ...newestFirst.slice(0, 199)]);
    expect(said.filter((m) => m.includes("was removed"))).toEqual([]);

    await page.getByRole("button", { name: "Show 200 more" }).click();
    await expect.poll(() => listed(), { timeout: 15_000 }).toHaveLength(206);
    expect(await listed()).toEqual(["ws-205", ...newestFirst]);
    expect(await page.getByRole("button", { name: "Show 200 more" }).isHidden()).toBe(true);
    expect(await page.locator(".workspaces-view p.muted").first().textContent()).toBe("");
  });
});
