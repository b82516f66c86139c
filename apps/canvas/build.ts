/**
 * Building the Canvas from scripts and tests (Node side). Several processes may
 * want a build at once (./start, ./cluster, test files running in parallel), so a
 * build takes a lock, writes to a directory of its own and swaps it into dist/.
 */
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const CANVAS_DIR = dirname(fileURLToPath(import.meta.url));
export const CANVAS_DIST = join(CANVAS_DIR, "dist");
const SHARED_SRC = join(CANVAS_DIR, "../../packages/shared/src");
/** What the bundle is made of: a change to any of these makes dist/ stale. */
const SOURCES = ["src", "index.html", "vite.config.ts", "package.json"].map((s) => join(CANVAS_DIR, s)).concat(join(SHARED_SRC, "protocol.ts"), join(SHARED_SRC, "workspace.ts"));
const LOCK = join(CANVAS_DIR, ".build.lock");
const LOCK_STALE_MS = 120_000;

function newestMtime(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let m = st.mtimeMs;
  for (const e of readdirSync(path)) m = Math.max(m, newestMtime(join(path, e)));
  return m;
}

/** True when dist/ is missing or older than any of its sources. */
export function canvasIsStale(): boolean {
  const built = join(CANVAS_DIST, "index.html");
  if (!existsSync(built)) return true;
  const newest = Math.max(...SOURCES.filter((s) => existsSync(s)).map(newestMtime));
  return newest > statSync(built).mtimeMs;
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function lock(): () => void {
  for (;;) {
    try {
      closeSync(openSync(LOCK, "wx"));
      return () => rmSync(LOCK, { force: true });
    } catch {
      // Held by another build; a lock left by a killed one expires.
      try {
        if (Date.now() - statSync(LOCK).mtimeMs > LOCK_STALE_MS) rmSync(LOCK, { force: true });
      } catch {
        // released meanwhile
      }
      sleepSync(250);
    }
  }
}

/**
 * Builds dist/ when it is missing or stale (vite build into a fresh directory,
 * then swapped in). False when the build failed; `log` gets what vite printed.
 */
export function buildCanvasIfStale(log: (s: string) => void = (s) => process.stdout.write(s)): boolean {
  if (!existsSync(join(CANVAS_DIR, "index.html"))) return true; // nothing to build
  if (!canvasIsStale()) return true;
  const release = lock();
  try {
    if (!canvasIsStale()) return true; // another process built it while we waited
    log("building the Canvas…\n");
    const out = join(CANVAS_DIR, `dist.tmp-${process.pid}`);
    const vite = join(CANVAS_DIR, "node_modules/vite/bin/vite.js");
    const r = spawnSync(process.execPath, [vite, "build", "--outDir", out, "--logLevel", "warn"], { cwd: CANVAS_DIR, encoding: "utf8" });
    log(`${r.stdout ?? ""}${r.stderr ?? ""}`);
    if (r.status !== 0 || !existsSync(join(out, "index.html"))) {
      rmSync(out, { recursive: true, force: true });
      return false;
    }
    const old = join(CANVAS_DIR, `dist.old-${process.pid}`);
    if (existsSync(CANVAS_DIST)) renameSync(CANVAS_DIST, old);
    renameSync(out, CANVAS_DIST);
    rmSync(old, { recursive: true, force: true });
    return true;
  } finally {
    release();
  }
}
