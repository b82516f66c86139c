/**
 * The Canvas end to end in Debian's Chromium, through the load balancer of a
 * real multi-node cluster (haproxy, 3 API processes, 2 workers): sign in, create
 * a workspace, watch it become ready, use the Terminal tab, survive the drain
 * (1012) and the SIGKILL of the API node holding the socket, and stay responsive
 * under `yes`. (Three API nodes, so that one is left after two have gone.)
 * Screenshots of each step go to test-results/browser/.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureCanvasBuilt, launchChromium, type Browser, type Page } from "../../apps/canvas/e2e/browser.ts";
import { ROOT } from "../../scripts/processes.ts";
import { startCluster, type Cluster } from "../../scripts/cluster.ts";
import { childEnv, uniqueNs } from "../helpers/env.ts";
import { waitFor } from "../helpers/http.ts";

const SHOTS = join(ROOT, "test-results/browser");

let cluster: Cluster;
let browser: Browser;
let page: Page;
let step = 0;

async function shot(name: string): Promise<void> {
  step++;
  await page.screenshot({ path: join(SHOTS, `${String(step).padStart(2, "0")}-${name}.png`) });
}

/** The open terminals as the page's automation view reports them. */
function terms() {
  return page.evaluate(() =>
    window.moleculeCanvas!.terminals().map((t) => ({ title: t.title, state: t.state, session: t.session, size: t.size })),
  );
}
function termText(i = 0): Promise<string> {
  return page.evaluate((i) => window.moleculeCanvas!.terminals()[i]!.text(), i);
}
function waitTermState(state: string, i = 0, ms = 20_000) {
  return page.waitForFunction(([s, i]) => window.moleculeCanvas?.terminals()[i as number]?.state === s, [state, i] as const, { timeout: ms });
}

let tagN = 0;
/**
 * Types a command into the focused terminal as a user would and returns what it
 * printed between two markers that only the shell's output contains (the echo of
 * the typed line has `$((1))`, the output `1`).
 */
async function run(cmd: string, i = 0, ms = 15_000): Promise<string> {
  const tag = `m${++tagN}x${Date.now().toString(36)}`;
  await page.keyboard.type(`printf '%s\\n' "<<$((1))${tag}"; ${cmd}; printf '%s\\n' "$((2))${tag}>>"`);
  await page.keyboard.press("Enter");
  const re = new RegExp(`<<1${tag}\\n([\\s\\S]*?)2${tag}>>`);
  const handle = await page.waitForFunction(
    ([src, i]) => {
      const m = new RegExp(src as string).exec(window.moleculeCanvas!.terminals()[i as number]!.text());
      return m ? { out: m[1] } : null; // an object: empty output is an answer too
    },
    [re.source, i] as const,
    { timeout: ms, polling: 50 },
  );
  return ((await handle.jsonValue()) as { out: string }).out.trim();
}

function count(hay: string, needle: string): number {
  return hay.split(needle).length - 1;
}

/** The one API node (index) the terminal socket is attached to, from the nodes' own /metrics. */
async function holder(): Promise<number> {
  const counts = await waitFor(async () => {
    const c = await activeSessions();
    return c.filter((n) => n === 1).length === 1 && c.reduce<number>((s, n) => s + (n ?? 0), 0) === 1 ? c : null;
  });
  return counts.indexOf(1);
}

/** Terminal sockets attached to each API node, from the nodes' own /metrics. */
async function activeSessions(): Promise<(number | null)[]> {
  return Promise.all(
    cluster.apiUrls.map(async (u) => {
      try {
        const text = await (await fetch(`${u}/metrics`)).text();
        const m = /^molecule_terminal_sessions_active(?:\{[^}]*\})? (\d+)/m.exec(text);
        return m ? Number(m[1]) : 0;
      } catch {
        return null; // the node is gone
      }
    }),
  );
}

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  ensureCanvasBuilt();
  const ns = uniqueNs();
  [cluster, browser] = await Promise.all([startCluster({ port: 0, apis: 3, env: childEnv(ns) }), launchChromium()]);
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await ctx.newPage();
  page.on("pageerror", (err) => process.stderr.write(`[page error] ${err.message}\n`));
}, 90_000);

afterAll(async () => {
  await browser?.close().catch(() => {});
  await cluster?.stop();
});

describe("Canvas in Chromium through the load balancer", () => {
  it("sign in, create, ready, Terminal, resize, API node drain and SIGKILL, yes + Ctrl-C, audit, restart, delete", { timeout: 150_000 }, async () => {
    // ---- sign in: the token goes to session storage, never into the URL -----------------
    await page.goto(cluster.url);
    await page.getByLabel("Organisation token").fill(`mol_${"x".repeat(43)}`);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect.poll(() => page.locator("#token-error").textContent()).toContain("not valid");
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    await page.getByLabel("Organisation token").fill(cluster.token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    expect(page.url()).not.toContain(cluster.token);
    expect(await page.evaluate(() => sessionStorage.getItem("molecule.orgToken"))).toBe(cluster.token);
    await shot("signed-in");

    // ---- the API's validation error shows next to its field -----------------------------
    await page.getByRole("button", { name: "Create workspace" }).click();
    await expect.poll(() => page.locator("#name-error").textContent()).toContain("must not be empty");
    expect(await page.getByLabel("Name").getAttribute("aria-invalid")).toBe("true");
    await shot("validation-error");

    // ---- create; the row moves provisioning -> ready without a reload -------------------
    const seen: string[] = [];
    await page.exposeFunction("recordStatus", (s: string) => seen.push(s));
    const said: string[] = [];
    await page.exposeFunction("recordAnnouncement", (s: string) => said.push(s));
    await page.evaluate(() => {
      (window as unknown as { noReload: boolean }).noReload = true;
      // What screen readers hear: every message added to the live region.
      new MutationObserver((records) => {
        for (const r of records) for (const n of r.addedNodes) void (window as unknown as { recordAnnouncement(s: string): void }).recordAnnouncement(n.textContent ?? "");
      }).observe(document.getElementById("announcer")!, { childList: true });
      new MutationObserver(() => {
        for (const el of document.querySelectorAll('tr[data-workspace] .status')) {
          const s = el.textContent ?? "";
          if (el.getAttribute("data-seen") !== s) {
            el.setAttribute("data-seen", s);
            void (window as unknown as { recordStatus(s: string): void }).recordStatus(s);
          }
        }
      }).observe(document.body, { subtree: true, childList: true, characterData: true });
    });
    await page.getByLabel("Name").fill("e2e-agent");
    await page.getByLabel("Runtime").selectOption("hermes");
    await page.getByLabel("Tier").selectOption("2");
    await page.getByRole("button", { name: "Create workspace" }).click();
    const row = page.locator("tr[data-workspace]", { hasText: "e2e-agent" });
    await row.locator('.status[data-status="ready"]').waitFor({ timeout: 30_000 });
    const wsId = (await row.getAttribute("data-workspace"))!;
    expect(seen[0]).toBe("provisioning");
    expect(seen.at(-1)).toBe("ready");
    expect(await page.evaluate(() => (window as unknown as { noReload?: boolean }).noReload)).toBe(true);
    expect(await page.locator("#name-error").textContent()).toBe("");
    await shot("workspace-ready");

    // ---- Terminal: focus lands in it; whoami and the workspace id -----------------------
    await page.getByRole("button", { name: "Open a terminal in e2e-agent" }).click();
    await waitTermState("open");
    expect(await page.evaluate(() => document.activeElement?.classList.contains("xterm-helper-textarea"))).toBe(true);
    expect(await run("whoami")).toBe("root");
    expect(await run("echo $MOLECULE_WS_ID")).toBe(wsId);
    await shot("terminal-whoami");

    // ---- resizing the browser resizes the shell's terminal ------------------------------
    const before = (await terms())[0]!.size;
    expect(await run("stty size")).toBe(`${before.rows} ${before.cols}`);
    await page.setViewportSize({ width: 1000, height: 560 });
    await page.waitForFunction(
      (b) => {
        const s = window.moleculeCanvas!.terminals()[0]!.size;
        return s.cols !== b.cols && s.rows !== b.rows;
      },
      before,
      { timeout: 5000 },
    );
    const after = (await terms())[0]!.size;
    expect(await waitFor(async () => (await run("stty size")) === `${after.rows} ${after.cols}`, 5000)).toBe(true);
    await shot("terminal-resized");

    // ---- the API node holding the socket goes away: first drained (SIGTERM, close 1012),
    // then killed (SIGKILL, the socket just drops); each time the tab re-attaches through
    // another node to the same shell. $$ alone proves little in a sandbox with its own PID
    // namespace (every shell may be pid 2), so the shell also keeps an unexported variable.
    const pid = await run("echo $$");
    await run("SHELL_MARK=$RANDOM$RANDOM$RANDOM");
    const mark = await run("echo $SHELL_MARK");
    expect(mark).toMatch(/^\d{3,}$/);
    const session = (await terms())[0]!.session;
    const reconnects = () => said.filter((m) => m === "Terminal 1 of e2e-agent: connection lost, reconnecting").length;

    const drained = await holder();
    cluster.apis[drained]!.child.kill("SIGTERM");
    await expect.poll(reconnects, { timeout: 10_000 }).toBe(1);
    await waitTermState("open", 0, 30_000);
    expect((await terms())[0]!.session).toBe(session);
    expect(await run("echo $SHELL_MARK")).toBe(mark);
    expect(await cluster.apis[drained]!.exited).toBe(0);

    const killed = await holder();
    expect(killed).not.toBe(drained);
    const beforeKill = await termText();
    // Output produced while no node holds the socket must arrive after the re-attach, once.
    await page.keyboard.type("sleep 1; echo $((6*7))-while-away");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => window.moleculeCanvas!.terminals()[0]!.text().includes("while-away"));
    cluster.apis[killed]!.child.kill("SIGKILL");
    await expect.poll(reconnects, { timeout: 10_000 }).toBe(2);
    await shot("terminal-reconnecting");
    await waitTermState("open", 0, 30_000);
    expect((await terms())[0]!.session).toBe(session);
    const third = await holder();
    expect([drained, killed]).not.toContain(third);
    await page.waitForFunction(() => window.moleculeCanvas!.terminals()[0]!.text().includes("42-while-away"), undefined, { timeout: 10_000 });
    const afterKill = await termText();
    // Earlier output intact, nothing repeated.
    expect(afterKill.startsWith(beforeKill.trimEnd())).toBe(true);
    expect(count(afterKill, "42-while-away")).toBe(1);
    expect(count(afterKill, `\n${wsId}\n`)).toBe(1);
    expect(count(afterKill, `\n${mark}\n`)).toBe(2); // the two echoes before, none repeated
    expect(await run("echo $$")).toBe(pid);
    expect(await run("echo $SHELL_MARK")).toBe(mark);
    await shot("terminal-reconnected");
    expect(said).toContain("Workspace e2e-agent is now ready");
    expect(said.filter((m) => m.startsWith("Terminal 1 of e2e-agent"))).toEqual([
      "Terminal 1 of e2e-agent: connecting",
      "Terminal 1 of e2e-agent: connected",
      "Terminal 1 of e2e-agent: connection lost, reconnecting",
      "Terminal 1 of e2e-agent: connected",
      "Terminal 1 of e2e-agent: connection lost, reconnecting",
      "Terminal 1 of e2e-agent: connected",
    ]);

    // ---- yes, then Ctrl-C: the prompt is back within a second ---------------------------
    // The prompt the shell prints after each command (it follows the marker by a moment).
    const prompt = (await (
      await page.waitForFunction(() => window.moleculeCanvas!.terminals()[0]!.cursorLine().trim() || null, undefined, { timeout: 5000 })
    ).jsonValue()) as string;
    await page.keyboard.type("yes");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => window.moleculeCanvas!.terminals()[0]!.offset > 0, undefined, { timeout: 5000 });
    const flowing = await page.evaluate(() => window.moleculeCanvas!.terminals()[0]!.offset);
    // Let it run long enough to fill the flow-control window a few times over.
    await page.waitForFunction((f) => window.moleculeCanvas!.terminals()[0]!.offset > f + 2 * 1024 * 1024, flowing, { timeout: 20_000 });
    await shot("terminal-yes");
    const t0 = performance.now();
    await page.keyboard.press("Control+C");
    await page.waitForFunction((p) => window.moleculeCanvas!.terminals()[0]!.cursorLine().trim() === p, prompt, { timeout: 5000, polling: 20 });
    const ctrlCMs = performance.now() - t0;
    process.stdout.write(`Ctrl-C to prompt: ${ctrlCMs} ms\n`);
    expect(ctrlCMs).toBeLessThan(1000);
    expect(await run("echo still-$((1+1))")).toBe("still-2");
    await shot("terminal-after-ctrl-c");

    // ---- a second Terminal tab is another shell; closing it ends that shell -------------
    await page.getByRole("button", { name: "Open a terminal in e2e-agent" }).click();
    await waitTermState("open", 1);
    expect(await run("echo mark=$SHELL_MARK", 1)).toBe("mark=");
    expect((await terms())[0]!.state).toBe("open");
    await page.getByRole("button", { name: "Close e2e-agent · Terminal 2" }).click();

    // ---- the audit: who, when, how long, why it ended, bytes -----------------------------
    await page.getByRole("button", { name: "Sessions of e2e-agent" }).click();
    const auditRows = page.locator("table.audit tbody tr");
    const closedRow = auditRows.filter({ hasText: "closed by the user" });
    await expect
      .poll(async () => {
        await page.getByRole("button", { name: "Refresh" }).click();
        return closedRow.count();
      }, { timeout: 10_000 })
      .toBe(1);
    expect(await auditRows.count()).toBe(2);
    const prefix = cluster.token.slice(0, 12);
    for (const text of await auditRows.allTextContents()) expect(text).toContain(prefix);
    expect(await auditRows.filter({ hasText: "still open" }).count()).toBe(1);
    // The closed one typed one command and saw its echo and output.
    expect(await closedRow.locator("td.num").first().textContent()).toMatch(/^\d+ B$/);
    expect(await closedRow.locator("td.num").first().textContent()).not.toBe("0 B");
    await shot("audit");

    // ---- restart asks first; the open terminal then ends in words; Reconnect opens a new shell
    await page.getByRole("button", { name: "Restart e2e-agent" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await dialog.waitFor({ state: "detached" });
    expect((await terms())[0]!.state).toBe("open");
    await page.getByRole("button", { name: "Restart e2e-agent" }).click();
    await shot("confirm-restart");
    await dialog.getByRole("button", { name: "Restart", exact: true }).click();
    await waitTermState("ended", 0, 15_000);
    await page.getByRole("tab", { name: "e2e-agent · Terminal 1" }).click();
    const bar = page.locator(".term-panel:not([hidden]) .term-bar");
    expect(await bar.locator(".term-state").textContent()).toContain("The workspace is not ready");
    await row.locator('.status[data-status="ready"]').waitFor({ timeout: 30_000 });
    await shot("terminal-ended-after-restart");
    await bar.getByRole("button", { name: "Reconnect" }).click();
    await waitTermState("open");
    expect(await run("echo mark=$SHELL_MARK")).toBe("mark=");
    expect(await termText()).toContain("still-2"); // the old output stays above

    // ---- delete asks first; the row goes away -------------------------------------------
    await page.getByRole("button", { name: "Delete e2e-agent" }).click();
    await dialog.getByRole("button", { name: "Delete", exact: true }).click();
    await row.waitFor({ state: "detached", timeout: 30_000 });
    await waitTermState("ended", 0, 15_000);
    await shot("deleted");
  });
});
