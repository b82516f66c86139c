/**
 * A workspace whose provisioning fails: the Canvas row names the step it failed in and the
 * provider's message (here the local provider cannot create its sandbox: its root is a file).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
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
  const file = join(mkdtempSync(join(tmpdir(), "molecule-canvas-fail-")), "not-a-dir");
  writeFileSync(file, "");
  [s, browser] = await Promise.all([startStack({ local: { root: file } }), launchChromium()]);
}, 60_000);
afterAll(async () => {
  await browser?.close().catch(() => {});
  await s?.close();
});

describe("Canvas: a failed provisioning", () => {
  it("shows the failing step with the provider's message", { timeout: 40_000 }, async () => {
    const org = await s.org("fails");
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.addInitScript((t) => sessionStorage.setItem("molecule.orgToken", t), org.token);
    await page.goto(s.url);
    await page.getByLabel("Name").fill("doomed");
    await page.getByRole("button", { name: "Create workspace" }).click();
    const row = page.locator("tr[data-workspace]", { hasText: "doomed" });
    await row.locator('.status[data-status="failed"]').waitFor({ timeout: 20_000 });
    const progress = row.locator('.ws-progress[data-step="failed"]');
    await progress.waitFor({ timeout: 10_000 });
    expect(await progress.textContent()).toMatch(/^Failed while creating the sandbox: cannot create the sandbox directory under .*not-a-dir/);
    // The message is said once, in the progress line.
    expect(await row.locator(".ws-error").textContent()).toBe("");
    await page.screenshot({ path: join(SHOTS, "provisioning-failed.png") });
    await page.close();
  });
});
