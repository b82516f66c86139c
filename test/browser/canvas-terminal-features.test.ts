/**
 * The Canvas terminal's features in Debian's Chromium (no GPU) against a real stack:
 * provisioning you can watch (a local provider with a delay shows its steps in order),
 * the WebGL renderer's fallback, search, links (opened with noopener), wide characters,
 * copy and paste, font size and the light/dark theme. Screenshots go to test-results/browser/.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureCanvasBuilt, launchChromium, type Browser, type Page } from "../../apps/canvas/e2e/browser.ts";
import { ROOT } from "../../scripts/processes.ts";
import { startStack, type Stack } from "../helpers/stack.ts";

const SHOTS = join(ROOT, "test-results/browser");
const DELAY_MS = 2500;

let s: Stack;
let browser: Browser;
let token: string;
const cspViolations: string[] = [];
beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  ensureCanvasBuilt();
  [s, browser] = await Promise.all([startStack({ local: { provisionDelayMs: DELAY_MS } }), launchChromium()]);
  token = (await s.org("features")).token;
}, 90_000);
afterAll(async () => {
  await browser?.close().catch(() => {});
  await s?.close();
});

async function signedIn(opts: { colorScheme?: "light" | "dark"; noWebgl?: boolean } = {}): Promise<Page> {
  const ctx = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    colorScheme: opts.colorScheme ?? "dark",
    permissions: ["clipboard-read", "clipboard-write"],
  });
  if (opts.noWebgl) {
    // A browser without WebGL at all (blocklisted GPU, disabled by policy).
    await ctx.addInitScript(() => {
      const orig = HTMLCanvasElement.prototype.getContext;
      HTMLCanvasElement.prototype.getContext = function (this: HTMLCanvasElement, id: string, ...rest: unknown[]) {
        if (id === "webgl" || id === "webgl2" || id === "experimental-webgl") return null;
        return (orig as (...a: unknown[]) => RenderingContext | null).call(this, id, ...rest);
      } as typeof orig;
    });
  }
  await ctx.addInitScript((t) => sessionStorage.setItem("molecule.orgToken", t), token);
  const page = await ctx.newPage();
  page.on("pageerror", (err) => process.stderr.write(`[page error] ${err.message}\n`));
  // The addons must live within the Canvas's CSP (no eval, no WebAssembly, nothing from elsewhere).
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });
  await page.goto(s.url);
  await page.getByRole("heading", { name: "Workspaces" }).waitFor();
  return page;
}

const term = <T>(page: Page, fn: (t: import("../../apps/canvas/src/ui/automation.ts").TerminalView) => T) =>
  page.evaluate((src) => new Function("t", `return (${src})(t)`)(window.moleculeCanvas!.terminals()[0]), fn.toString()) as Promise<T>;

let tagN = 0;
async function run(page: Page, cmd: string, ms = 15_000): Promise<string> {
  const tag = `m${++tagN}x${Date.now().toString(36)}`;
  await page.keyboard.type(`printf '%s\\n' "<<$((1))${tag}"; ${cmd}; printf '%s\\n' "$((2))${tag}>>"`);
  await page.keyboard.press("Enter");
  const re = new RegExp(`<<1${tag}\\n([\\s\\S]*?)2${tag}>>`);
  const handle = await page.waitForFunction(
    (src) => {
      const m = new RegExp(src).exec(window.moleculeCanvas!.terminals()[0]!.text());
      return m ? { out: m[1] } : null;
    },
    re.source,
    { timeout: ms, polling: 50 },
  );
  return ((await handle.jsonValue()) as { out: string }).out.trim();
}

/** The centre of a screen cell, in page pixels. */
async function cellCentre(page: Page, cell: { col: number; row: number }): Promise<{ x: number; y: number }> {
  const box = (await page.locator(".term-panel:not([hidden]) .xterm-screen").boundingBox())!;
  const size = await term(page, (t) => t.size);
  const w = box.width / size.cols;
  const h = box.height / size.rows;
  return { x: box.x + (cell.col + 0.5) * w, y: box.y + (cell.row + 0.5) * h };
}

let wsName = "";
let page: Page;

describe("Canvas: provisioning you can watch", () => {
  it("a provider with a delay: the row shows its steps in order with the elapsed time, then ready", { timeout: 60_000 }, async () => {
    page = await signedIn();
    const seen: string[] = [];
    await page.exposeFunction("recordProgress", (step: string, text: string) => seen.push(`${step}|${text}`));
    await page.evaluate(() => {
      new MutationObserver(() => {
        for (const el of document.querySelectorAll<HTMLElement>("tr[data-workspace] .ws-progress")) {
          const key = `${el.dataset.step}|${el.textContent}`;
          if (!el.hidden && el.dataset.seen !== key) {
            el.dataset.seen = key;
            void (window as unknown as { recordProgress(a: string, b: string): void }).recordProgress(el.dataset.step ?? "", el.textContent ?? "");
          }
        }
      }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
    });
    wsName = "watched";
    await page.getByLabel("Name").fill(wsName);
    await page.getByRole("button", { name: "Create workspace" }).click();
    const row = page.locator("tr[data-workspace]", { hasText: wsName });
    const progress = row.locator(".ws-progress");
    await progress.filter({ hasText: /^Creating the sandbox… [12] s$/ }).waitFor({ timeout: 10_000 });
    await page.screenshot({ path: join(SHOTS, "features-01-provisioning-step.png") });
    await row.locator('.status[data-status="ready"]').waitFor({ timeout: 20_000 });
    expect(await progress.isHidden()).toBe(true);
    const steps = seen.map((x) => x.split("|")[0]!);
    // In order (a poll may fall between the first steps), the provider's own step seen, the elapsed time moving on.
    const order = ["queued", "started", "creating_sandbox"];
    const distinct = steps.filter((st, i) => st !== steps[i - 1]);
    expect(distinct).toEqual(order.filter((st) => distinct.includes(st)));
    expect(distinct).toContain("creating_sandbox");
    const sandboxTexts = seen.filter((x) => x.startsWith("creating_sandbox|")).map((x) => x.split("|")[1]);
    expect(sandboxTexts.length).toBeGreaterThanOrEqual(2);
    expect(sandboxTexts.every((t) => /^Creating the sandbox… \d+ s$/.test(t!))).toBe(true);
  });
});

describe("Canvas: the terminal", () => {
  it("renders without a GPU (WebGL or its DOM fallback) and has search, links, wide characters, clipboard, font size", { timeout: 90_000 }, async () => {
    await page.getByRole("button", { name: `Open a terminal in ${wsName}` }).click();
    await page.waitForFunction(() => window.moleculeCanvas?.terminals()[0]?.state === "open", undefined, { timeout: 20_000 });
    const renderer = await term(page, (t) => t.renderer);
    process.stdout.write(`renderer in headless Chromium --disable-gpu: ${renderer}\n`);
    expect(["webgl", "dom"]).toContain(renderer);
    expect(await page.locator(".term-panel:not([hidden])").getAttribute("data-renderer")).toBe(renderer);
    expect(await run(page, "echo ok-$((1+1))")).toBe("ok-2");

    // ---- wide characters: 漢字🙂 take two cells each, so the cursor is at column 7 after "x".
    await page.keyboard.type(`clear; printf '\\346\\274\\242\\345\\255\\227\\360\\237\\231\\202x'; read -r _`);
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => window.moleculeCanvas!.terminals()[0]!.cursorLine().startsWith("漢字🙂x"), undefined, { timeout: 5000 });
    expect(await term(page, (t) => t.cursor().x)).toBe(7);
    expect(await term(page, (t) => t.locate("x"))).toMatchObject({ col: 6 });
    await page.screenshot({ path: join(SHOTS, "features-02-wide-characters.png") });
    await page.keyboard.press("Enter");

    // ---- search finds a word printed earlier and scrolled out of view ----------------------
    expect(await run(page, "echo needle-$((40+2)); seq 1 300")).toContain("needle-42");
    expect(await term(page, (t) => t.locate("needle-42"))).toBeNull();
    await page.keyboard.press("Control+F");
    const search = page.getByRole("searchbox", { name: "Search the terminal output" });
    await search.waitFor();
    expect(await page.evaluate(() => document.activeElement?.classList.contains("term-search-input"))).toBe(true);
    await search.fill("needle-42");
    await page.keyboard.press("Enter");
    await expect.poll(() => page.locator(".term-search-count").textContent()).toBe("1 of 1");
    expect(await term(page, (t) => t.locate("needle-42"))).not.toBeNull();
    expect(await term(page, (t) => t.selection())).toBe("needle-42");
    await page.screenshot({ path: join(SHOTS, "features-03-search.png") });
    await search.fill("no-such-word-zzz");
    await expect.poll(() => page.locator(".term-search-count").textContent()).toBe("No matches");
    await page.keyboard.press("Escape");
    expect(await page.locator(".term-search").isHidden()).toBe(true);
    expect(await page.evaluate(() => document.activeElement?.classList.contains("xterm-helper-textarea"))).toBe(true);

    // ---- a link the shell prints is detected; clicking it opens a tab without an opener -----
    const href = `${s.url}/healthz`;
    // (Not `clear` inside run(): it would wipe run's own markers.) The output line, not the typed one, has "end-1".
    await run(page, `echo "docs: ${href} end-$((1))"`);
    const at = (await page.evaluate(() => window.moleculeCanvas!.terminals()[0]!.locate("healthz end-1")))!;
    expect(at).not.toBeNull();
    const p = await cellCentre(page, at);
    await page.mouse.move(p.x, p.y);
    // xterm.js underlines a link under the pointer.
    await page.waitForFunction(() => document.querySelector(".term-panel:not([hidden]) .xterm-screen")?.classList.contains("xterm-cursor-pointer"), undefined, { timeout: 5000 });
    const popup = page.context().waitForEvent("page", { timeout: 10_000 });
    await page.mouse.click(p.x, p.y);
    const opened = await popup;
    await opened.waitForLoadState();
    expect(opened.url()).toBe(href);
    expect(await opened.evaluate(() => window.opener)).toBeNull();
    await opened.close();
    await page.bringToFront();
    await page.locator(".term-panel:not([hidden]) .xterm-helper-textarea").focus();

    // ---- copy (on selection, and Ctrl-C with a selection) and paste (Ctrl-V) round trip --------
    await run(page, "echo copy-me-$((6*7))");
    const word = (await term(page, (t) => t.locate("copy-me-42 ")))!;
    const start = await cellCentre(page, word);
    const end = await cellCentre(page, { col: word.col + "copy-me-42".length - 1, row: word.row });
    await page.mouse.move(start.x - 3, start.y);
    await page.mouse.down();
    await page.mouse.move(end.x + 3, end.y, { steps: 5 });
    await page.mouse.up();
    expect(await term(page, (t) => t.selection())).toBe("copy-me-42");
    await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe("copy-me-42");
    await page.evaluate(() => navigator.clipboard.writeText("stale"));
    // Ctrl-C with a selection copies it and does not interrupt the shell.
    await page.keyboard.press("Control+C");
    await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe("copy-me-42");
    expect(await term(page, (t) => t.text())).not.toContain("^C");
    await page.keyboard.type("echo pasted:");
    await page.keyboard.press("Control+V");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => /\npasted:copy-me-42\n/.test(window.moleculeCanvas!.terminals()[0]!.text()), undefined, { timeout: 5000 });
    await page.screenshot({ path: join(SHOTS, "features-04-copy-paste.png") });
    // OSC 52 from a program in the shell sets the clipboard.
    await run(page, `printf '\\033]52;c;%s\\a' "$(printf from-osc-52 | base64)"`);
    await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe("from-osc-52");

    // ---- font size: larger text, fewer columns; the shell is told -------------------------------
    const before = await term(page, (t) => ({ size: t.size, font: t.fontSize }));
    await page.getByRole("button", { name: "Larger text" }).click();
    await page.getByRole("button", { name: "Larger text" }).click();
    await page.waitForFunction((c) => window.moleculeCanvas!.terminals()[0]!.size.cols < c, before.size.cols, { timeout: 5000 });
    expect(await term(page, (t) => t.fontSize)).toBe(before.font + 2);
    await expect
      .poll(async () => {
        const size = await term(page, (t) => t.size);
        return (await run(page, "stty size")) === `${size.rows} ${size.cols}`;
      }, { timeout: 10_000 })
      .toBe(true);
    await page.screenshot({ path: join(SHOTS, "features-05-larger-font.png") });
    await page.getByRole("button", { name: "Smaller text" }).click();
    expect(await term(page, (t) => t.fontSize)).toBe(before.font + 1);

    // ---- the theme follows the system's setting ---------------------------------------------
    expect(await term(page, (t) => t.background)).toBe("#111418");
    await page.emulateMedia({ colorScheme: "light" });
    await page.waitForFunction(() => window.moleculeCanvas!.terminals()[0]!.background === "#fbfbfc", undefined, { timeout: 5000 });
    await run(page, "ls -la / | head -5");
    await page.screenshot({ path: join(SHOTS, "features-06-light-theme.png") });

    // ---- the GPU goes away mid-session (context lost): the DOM renderer takes over -------------
    if (renderer === "webgl") {
      await page.evaluate(() => {
        for (const c of document.querySelectorAll<HTMLCanvasElement>(".term-panel:not([hidden]) canvas")) {
          const gl = c.getContext("webgl2");
          gl?.getExtension("WEBGL_lose_context")?.loseContext();
        }
      });
      await page.waitForFunction(() => window.moleculeCanvas!.terminals()[0]!.renderer === "dom", undefined, { timeout: 10_000 });
      expect(await run(page, "echo after-loss-$((5*5))")).toBe("after-loss-25");
    }
  });

  it("without WebGL at all the DOM renderer takes over and the terminal works", { timeout: 60_000 }, async () => {
    const p2 = await signedIn({ noWebgl: true, colorScheme: "light" });
    await p2.getByRole("button", { name: `Open a terminal in ${wsName}` }).click();
    await p2.waitForFunction(() => window.moleculeCanvas?.terminals()[0]?.state === "open", undefined, { timeout: 20_000 });
    expect(await term(p2, (t) => t.renderer)).toBe("dom");
    expect(await run(p2, "echo fallback-$((3*3))")).toBe("fallback-9");
    await p2.screenshot({ path: join(SHOTS, "features-07-dom-fallback.png") });
    await p2.context().close();
  });

  it("nothing above broke the Canvas's CSP (no eval, no WebAssembly, nothing from elsewhere)", () => {
    expect(cspViolations).toEqual([]);
  });
});
