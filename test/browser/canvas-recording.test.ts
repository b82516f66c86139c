/**
 * Session recording and live viewers in the Canvas, in Debian's Chromium against a real stack (real
 * shells, the filesystem store): a session that runs a few commands is played back in the Sessions
 * view and its last screen is what the live terminal showed; seeking, speed and Download .cast; Watch
 * on a live session and "2 watching" in the controller's header. Screenshots go to test-results/browser/.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFsStore } from "@molecule/shared/recording/index";
import { ensureCanvasBuilt, launchChromium, type Browser, type Page } from "../../apps/canvas/e2e/browser.ts";
import { ROOT } from "../../scripts/processes.ts";
import { readyWorkspace } from "../helpers/http.ts";
import { startStack, type Stack } from "../helpers/stack.ts";

const SHOTS = join(ROOT, "test-results/browser");

let s: Stack;
let browser: Browser;
let token: string;
let dir: string;
const WS = "rec-demo";
beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  ensureCanvasBuilt();
  dir = mkdtempSync(join(tmpdir(), "molecule-rec-"));
  [s, browser] = await Promise.all([startStack({ recording: { store: createFsStore(dir) } }), launchChromium()]);
  token = (await s.org("rec-browser")).token;
  await readyWorkspace(s.url, token, WS);
}, 90_000);
afterAll(async () => {
  await browser?.close().catch(() => {});
  await s?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function signedIn(): Promise<Page> {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: "dark" });
  await ctx.addInitScript((t) => sessionStorage.setItem("molecule.orgToken", t), token);
  const page = await ctx.newPage();
  page.on("pageerror", (err) => process.stderr.write(`[page error] ${err.message}\n`));
  await page.goto(s.url);
  await page.getByRole("heading", { name: "Workspaces" }).waitFor();
  return page;
}

/** The open terminal view whose title matches `title` (a live terminal, a player, a watcher), as data. */
function view(page: Page, title: string): Promise<{ state: string; session: string | null; text: string; size: { cols: number; rows: number } }> {
  return page.evaluate((re) => {
    const t = window.moleculeCanvas!.terminals().find((x) => new RegExp(re).test(x.title));
    if (!t) throw new Error(`no terminal titled ${re}`);
    return { state: t.state, session: t.session, text: t.text(), size: t.size };
  }, title);
}
/** Waits until that view's state is one of `states`, or its text matches `text` (a regex source). */
function waitView(page: Page, title: string, want: { states?: string[]; text?: string; notText?: string }, ms = 20_000): Promise<unknown> {
  return page.waitForFunction(
    ({ re, w }) => {
      const t = window.moleculeCanvas?.terminals().find((x) => new RegExp(re).test(x.title));
      if (!t) return false;
      if (w.states && !w.states.includes(t.state)) return false;
      if (w.text && !new RegExp(w.text).test(t.text())) return false;
      if (w.notText && new RegExp(w.notText).test(t.text())) return false;
      return true;
    },
    { re: title, w: want },
    { timeout: ms, polling: 50 },
  );
}

/** The screen as lines without trailing blanks (what a user sees, compared line by line). */
const screenOf = (text: string) => text.replace(/\s+$/g, "").split("\n").map((l) => l.trimEnd());

describe("Canvas: recordings and viewers", () => {
  it("a recorded session played back ends on the screen the live terminal showed", async () => {
    const page = await signedIn();
    await page.getByRole("button", { name: `Open a terminal in ${WS}` }).click();
    await waitView(page, "Terminal", { states: ["open"] });
    // A few commands, with colour, UTF-8 and a pause (idle time is compressed in playback).
    for (const cmd of ["echo hello-$((6*7))", "printf '\\033[32mgreen\\033[0m and ünïcödé ✓\\n'", "sleep 3; seq 1 5", "ls -d /tmp /usr"]) {
      await page.keyboard.type(cmd);
      await page.keyboard.press("Enter");
    }
    await waitView(page, "Terminal", { text: "\\/usr\\s*\\n" });
    // The session id while it is open (the tab forgets it at the end).
    const sid = (await view(page, "Terminal")).session!;
    await page.keyboard.type("exit");
    await page.keyboard.press("Enter");
    await waitView(page, "Terminal", { states: ["ended"] });
    // The tab's own status line after the end is not the shell's output.
    const live = screenOf(
      (await view(page, "Terminal")).text
        .split("\n")
        .filter((l) => !/^\[The shell exited/.test(l))
        .join("\n"),
    );
    expect(live.join("\n")).toContain("hello-42");
    await page.screenshot({ path: join(SHOTS, "recording-01-live.png") });

    await page.getByRole("button", { name: `Terminal sessions of ${WS}` }).click();
    await page.getByRole("button", { name: `Play the recording of session ${sid.slice(0, 8)}` }).click();
    await waitView(page, "Recording", { states: ["playing", "ended"] });
    await page.getByRole("button", { name: "4x" }).click();
    // Mid-way the screen is only part of it: the recording plays with its timing, not all at once.
    await waitView(page, "Recording", { text: "hello-42" });
    const early = (await view(page, "Recording")).text;
    expect(early).not.toContain("/usr");
    await waitView(page, "Recording", { states: ["ended"] }, 30_000);
    const played = screenOf((await view(page, "Recording")).text);
    await page.screenshot({ path: join(SHOTS, "recording-02-played.png") });
    expect(played).toEqual(live);
    expect((await view(page, "Recording")).size).toEqual((await view(page, "Terminal")).size);

    // Seek back to the start, then to the end: the screen follows the timeline.
    const timeline = page.getByRole("slider", { name: "Position in the recording" });
    await timeline.fill("0");
    await waitView(page, "Recording", { notText: "hello-42" });
    const max = await timeline.getAttribute("max");
    await timeline.fill(max!);
    await waitView(page, "Recording", { states: ["ended"], text: "logout" });
    expect(screenOf((await view(page, "Recording")).text)).toEqual(live);
    // Idle compressed: the 3 s sleep plays as at most 2 s.
    expect(Number(max)).toBeLessThan(20);

    const link = page.getByRole("link", { name: "Download .cast" });
    expect(await link.getAttribute("download")).toBe(`${sid}.cast`);
    const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
    const path = await download.path();
    const { readFileSync } = await import("node:fs");
    const cast = readFileSync(path!, "utf8");
    expect(JSON.parse(cast.split("\n")[0]!)).toMatchObject({ version: 2, title: WS });
    await page.context().close();
  });

  it("Watch on a live session shows its output read-only; the controller's header says 2 watching", async () => {
    const ctl = await signedIn();
    await ctl.getByRole("button", { name: `Open a terminal in ${WS}` }).click();
    await waitView(ctl, "Terminal", { states: ["open"] });
    await ctl.keyboard.type("echo controller-here");
    await ctl.keyboard.press("Enter");
    await waitView(ctl, "Terminal", { text: "controller-here\\s*\\n" });
    const sid = (await view(ctl, "Terminal")).session!;
    const watchers: Page[] = [];
    for (let i = 0; i < 2; i++) {
      const w = await signedIn();
      await w.getByRole("button", { name: `Terminal sessions of ${WS}` }).click();
      await w.getByRole("button", { name: `Watch session ${sid.slice(0, 8)} live` }).click();
      await waitView(w, "Watching", { states: ["open"], text: "controller-here" });
      watchers.push(w);
    }
    await ctl.locator(".term-watching", { hasText: "2 watching" }).waitFor({ timeout: 10_000 });
    await ctl.screenshot({ path: join(SHOTS, "recording-03-two-watching.png") });
    // A watcher's typing goes nowhere; the controller's output reaches both.
    await watchers[0]!.keyboard.type("echo from-watcher");
    await watchers[0]!.keyboard.press("Enter");
    await ctl.locator(".xterm-screen").click();
    await ctl.keyboard.type("echo after-$((2+3))");
    await ctl.keyboard.press("Enter");
    for (const w of watchers) await waitView(w, "Watching", { text: "after-5\\s*\\n" });
    expect((await view(ctl, "Terminal")).text).not.toContain("from-watcher");
    await watchers[1]!.screenshot({ path: join(SHOTS, "recording-04-watcher.png") });
    await watchers[1]!.context().close();
    await ctl.locator(".term-watching", { hasText: "1 watching" }).waitFor({ timeout: 10_000 });
    await watchers[0]!.context().close();
    await ctl.context().close();
  });
});
