/**
 * Browser test support (imported by test/browser/*): Debian's Chromium driven by
 * playwright-core, and a Canvas build that matches its sources. Lives in the
 * canvas package because playwright-core is installed here.
 */
import { existsSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser } from "playwright-core";

export type { Browser, Page } from "playwright-core";
import { buildCanvasIfNeeded } from "../../../scripts/stack-setup.ts";
import { ROOT } from "../../../scripts/processes.ts";

export const CHROMIUM = process.env.MOLECULE_CHROMIUM ?? "/usr/bin/chromium";
const CANVAS = join(ROOT, "apps/canvas");

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-quic",
      "--no-first-run",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

function newestMtime(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let m = 0;
  for (const e of readdirSync(path)) m = Math.max(m, newestMtime(join(path, e)));
  return m;
}

/** True when dist/ is missing or older than any source the build reads. */
export function canvasIsStale(): boolean {
  const built = join(CANVAS, "dist/index.html");
  if (!existsSync(built)) return true;
  const sources = ["src", "index.html", "vite.config.ts", "package.json", "../../packages/shared/src/protocol.ts", "../../packages/shared/src/workspace.ts"];
  const newest = Math.max(...sources.map((s) => join(CANVAS, s)).filter(existsSync).map(newestMtime));
  return newest > statSync(built).mtimeMs;
}

/** Builds the Canvas when dist/ is missing or stale; throws when it still is not there. */
export function ensureCanvasBuilt(): void {
  if (canvasIsStale()) rmSync(join(CANVAS, "dist"), { recursive: true, force: true });
  buildCanvasIfNeeded();
  if (!existsSync(join(CANVAS, "dist/index.html"))) throw new Error("the Canvas build failed (pnpm --filter @molecule/canvas build)");
}
