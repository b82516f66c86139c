/**
 * Browser test support (imported by test/browser/*): Debian's Chromium driven by
 * playwright-core, and a Canvas build that matches its sources. Lives in the
 * canvas package because playwright-core is installed here.
 */
import { chromium, type Browser } from "playwright-core";
import { buildCanvasIfStale } from "../build.ts";

export type { Browser, Page } from "playwright-core";

export const CHROMIUM = process.env.MOLECULE_CHROMIUM ?? "/usr/bin/chromium";

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

/** Builds the Canvas when dist/ is missing or stale; throws when the build fails. */
export function ensureCanvasBuilt(): void {
  let out = "";
  if (!buildCanvasIfStale((s) => (out += s))) throw new Error(`the Canvas build failed:\n${out}`);
}
