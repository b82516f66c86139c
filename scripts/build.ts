/**
 * Compiles the server processes (the API, the terminal-worker, and the bench's
 * bare bridge) into plain JavaScript with esbuild, so they run under `node`
 * alone: no tsx loader and no esbuild service child at run time.
 *
 *   node --import tsx scripts/build.ts          # builds when the sources changed (fast when not)
 *   node --import tsx scripts/build.ts --force  # builds anyway
 *   node dist/server/api.js                     # then; likewise worker.js
 *
 * Each build goes to dist/server/<id>/ (id: a hash of every input file), and
 * dist/server/{api,worker,bare-bridge}.js import the newest one. A process that
 * is running keeps its own directory (chunks load lazily), so a rebuild under a
 * running process or a test run never swaps files beneath it.
 *
 * What the code reads beside itself at run time (the Lua scripts, the drizzle
 * migrations, the Canvas, docs/, redoc, the EIC proxy script, default state
 * directories) stays where it is in the checkout: every `import.meta.url` of our
 * own sources is rewritten to that source file's URL, relative to the bundle.
 * node-pty (native) stays external and loads from node_modules.
 */
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BUILD_SCRIPT = fileURLToPath(import.meta.url);

/** The entry points, by the name of their compiled file. */
export const SERVER_ENTRIES = {
  api: "apps/api/src/main.ts",
  worker: "apps/terminal-worker/src/main.ts",
  "bare-bridge": "bench/bare-bridge.ts",
} as const;
export type ServerEntry = keyof typeof SERVER_ENTRIES;

export const SERVER_DIST = join(ROOT, "dist/server");
const STAMP = join(SERVER_DIST, "current.json");
const LOCK = join(SERVER_DIST, ".build.lock");
const LOCK_STALE_MS = 120_000;
/** Older builds kept for processes still running from them (chunks load lazily, at start: the AWS provider, the S3 store). */
const KEEP_BUILDS = 4;
const PRUNE_AFTER_MS = 10 * 60_000;
/** Not in the bundle's inputs, but a change to them changes what it should be. */
const EXTRA_INPUTS = ["scripts/build.ts", "package.json", "pnpm-lock.yaml"];
/** Loaded by node at run time: native (node-pty), or optional helpers ws runs without. */
const EXTERNAL = ["node-pty", "bufferutil", "utf-8-validate"];

export interface Build {
  id: string;
  dir: string;
  /** Absolute path of each compiled entry point (those whose sources exist: the images have no bench/). */
  files: Partial<Record<ServerEntry, string>>;
}

/** [size, mtimeMs, sha256]: size and mtime answer quickly; the hash decides when they changed. */
type Stamp = [number, number, string];
interface StampFile {
  version: 1;
  id: string;
  entries: ServerEntry[];
  inputs: Record<string, Stamp>;
}

function sha256(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

function readStamp(): StampFile | null {
  let text: string;
  try {
    text = readFileSync(STAMP, "utf8");
  } catch {
    return null; // never built
  }
  try {
    const s = JSON.parse(text) as StampFile;
    const ok = s.version === 1 && /^[0-9a-f]{16}$/.test(String(s.id)) && Array.isArray(s.entries) && typeof s.inputs === "object";
    return ok ? s : null;
  } catch {
    return null; // unreadable: build again
  }
}

/** The entries this checkout has sources for. */
function presentEntries(): ServerEntry[] {
  return (Object.keys(SERVER_ENTRIES) as ServerEntry[]).filter((k) => existsSync(join(ROOT, SERVER_ENTRIES[k])));
}

function buildOf(id: string, entries: ServerEntry[]): Build {
  const dir = join(SERVER_DIST, id);
  return { id, dir, files: Object.fromEntries(entries.map((k) => [k, join(dir, `${k}.js`)])) };
}

/** The current build when it is complete and every input still has the content it was built from; else null. */
export function freshBuild(): Build | null {
  const s = readStamp();
  if (!s) return null;
  const entries = presentEntries();
  if (entries.some((e) => !s.entries.includes(e))) return null;
  const b = buildOf(s.id, s.entries);
  if (!Object.values(b.files).every((f) => existsSync(f))) return null;
  for (const [rel, [size, mtime, hash]] of Object.entries(s.inputs)) {
    const path = join(ROOT, rel);
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(path);
    } catch {
      return null; // an input is gone (a dependency upgraded, a file moved)
    }
    if (st.size === size && st.mtimeMs === mtime && hash) continue;
    if (!hash || sha256(path) !== hash) return null;
  }
  return b;
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** One build at a time across processes (./start, ./cluster, test files in parallel); a lock a killed build left expires. */
function lockSync(): () => void {
  mkdirSync(SERVER_DIST, { recursive: true });
  for (;;) {
    try {
      closeSync(openSync(LOCK, "wx"));
      return () => rmSync(LOCK, { force: true });
    } catch {
      try {
        if (Date.now() - statSync(LOCK).mtimeMs > LOCK_STALE_MS) rmSync(LOCK, { force: true });
      } catch {
        // released meanwhile
      }
      sleepSync(100);
    }
  }
}

/**
 * The current build, compiling first when the sources changed (in a child
 * process: esbuild's plugins need its async API). Synchronous, so launchers and
 * test helpers can call it right before they spawn.
 */
export function ensureBuilt(): Build {
  const fresh = freshBuild();
  if (fresh) return fresh;
  const release = lockSync();
  try {
    const again = freshBuild();
    if (again) return again; // another process built it while we waited
    const r = spawnSync(process.execPath, ["--import", "tsx", BUILD_SCRIPT, "--force", "--locked"], { cwd: ROOT, encoding: "utf8" });
    const s = r.status === 0 ? readStamp() : null;
    if (!s) throw new Error(`scripts/build.ts failed (${r.status ?? r.signal}):\n${r.stdout ?? ""}${r.stderr ?? ""}${r.error?.message ?? ""}`);
    // The build just made, even if a source changed while it ran (the next call builds again).
    return buildOf(s.id, s.entries);
  } finally {
    release();
  }
}

/**
 * Every module's location is where its file is in the checkout, not the bundle's: `import.meta.url` (our sources and
 * ESM dependencies) becomes that file's URL, and CommonJS dependencies get their own `__dirname`/`__filename`
 * (ioredis reads its package.json, msgpackr-extract finds its native binary by them). Both resolve against
 * __molRoot (the banner), so the checkout can move as long as dist/ moves with it.
 */
const sourceUrls = {
  name: "source-urls",
  setup(b: { onLoad(o: { filter: RegExp }, cb: (a: { path: string }) => { contents: string; loader: "ts" | "js" } | undefined): void }) {
    const entries = new Set(Object.values(SERVER_ENTRIES).map((e) => join(ROOT, e)));
    b.onLoad({ filter: /\.(m?ts|[cm]?js)$/ }, (a) => {
      // An entry's own import.meta.url stays its bundle's: "am I the main module" checks compare it with argv[1].
      if (entries.has(a.path)) return undefined;
      const text = readFileSync(a.path, "utf8");
      const meta = text.includes("import.meta.url");
      const cjsPaths = /\b__(dirname|filename)\b/.test(text) && !/\b(const|let|var|function)\s+__(dirname|filename)\b/.test(text);
      if (!meta && !cjsPaths) return undefined;
      const rel = JSON.stringify(relative(ROOT, a.path).split(sep).join("/"));
      const url = `new URL(${rel}, __molRoot)`;
      let contents = meta ? text.replaceAll("import.meta.url", `${url}.href`) : text;
      // Inside the module's own wrapper (esbuild wraps each CommonJS module in a function): scoped to it.
      if (cjsPaths) contents = `var __filename = __molPath(${url}); var __dirname = __molDirname(__filename);\n${contents}`;
      return { contents, loader: /\.m?ts$/.test(a.path) ? "ts" : "js" };
    });
  },
};

/** Compiles every entry into dist/server/<id>/ and makes it the current build. */
export async function build(): Promise<Build> {
  const { build: esbuild, version } = await import("esbuild");
  mkdirSync(SERVER_DIST, { recursive: true });
  const entries = presentEntries();
  const started = Date.now();
  const tmp = mkdtempSync(join(SERVER_DIST, ".tmp-"));
  // Readable by whoever runs it (the images run the API as `node`; mkdtemp makes it 0700).
  chmodSync(tmp, 0o755);
  try {
    const result = await esbuild({
      absWorkingDir: ROOT,
      entryPoints: Object.fromEntries(entries.map((k) => [k, join(ROOT, SERVER_ENTRIES[k])])),
      outdir: tmp,
      bundle: true,
      // Shared code once; what loads lazily (the AWS provider and SDK, the S3 store) stays out until it is used.
      splitting: true,
      format: "esm",
      platform: "node",
      target: "node20",
      chunkNames: "chunk-[hash]",
      external: EXTERNAL,
      // Error and class names as in the sources (logs, instanceof-free checks of .name).
      keepNames: true,
      // Stack traces map back to the sources with NODE_OPTIONS=--enable-source-maps.
      sourcemap: "linked",
      metafile: true,
      plugins: [sourceUrls as never],
      // CommonJS dependencies call require() (ESM has none); __molRoot is the checkout's root, three levels up
      // (dist/server/<id>/): what the rewritten import.meta.url of each source resolves against.
      banner: {
        js: [
          'import { createRequire as __molCreateRequire } from "node:module";',
          "const require = __molCreateRequire(import.meta.url);",
          'const __molRoot = new URL("../../../", import.meta.url);',
          'import { fileURLToPath as __molPath } from "node:url"; import { dirname as __molDirname } from "node:path";',
        ].join(" "),
      },
      legalComments: "none",
      logLevel: "warning",
    });
    const inputs: Record<string, Stamp> = {};
    const paths = new Set([...Object.keys(result.metafile.inputs), ...EXTRA_INPUTS]);
    for (const rel of [...paths].sort()) {
      const path = join(ROOT, rel);
      if (!existsSync(path)) continue; // esbuild's virtual inputs
      const st = statSync(path);
      // Changed while the build ran: the bundle may hold either version, so the next check builds again.
      inputs[rel] = [st.size, st.mtimeMs, st.mtimeMs >= started ? "" : sha256(path)];
    }
    const id = createHash("sha256").update(version).update(entries.join()).update(JSON.stringify(Object.entries(inputs).map(([k, v]) => [k, v[2]]))).digest("hex").slice(0, 16);
    const b = buildOf(id, entries);
    if (existsSync(b.dir)) rmSync(tmp, { recursive: true, force: true });
    else renameSync(tmp, b.dir);
    for (const name of entries) {
      writeAtomic(join(SERVER_DIST, `${name}.js`), `// Generated by scripts/build.ts: the current build.\nimport "./${id}/${name}.js";\n`);
    }
    writeAtomic(STAMP, `${JSON.stringify({ version: 1, id, entries, inputs } satisfies StampFile)}\n`);
    prune(id);
    return b;
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/** Drops builds beyond the newest few once they are old, and temporary directories of builds that died. */
function prune(current: string): void {
  const now = Date.now();
  const dirs = readdirSync(SERVER_DIST, { withFileTypes: true })
    .filter((e) => e.isDirectory() && e.name !== current)
    .map((e) => ({ name: e.name, mtime: statSync(join(SERVER_DIST, e.name)).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime);
  const builds = dirs.filter((d) => !d.name.startsWith("."));
  const drop = [...dirs.filter((d) => d.name.startsWith(".tmp-")), ...builds.slice(KEEP_BUILDS - 1)];
  for (const d of drop) if (now - d.mtime > PRUNE_AFTER_MS) rmSync(join(SERVER_DIST, d.name), { recursive: true, force: true });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const t0 = performance.now();
  let b: Build;
  if (args.includes("--locked")) {
    b = await build(); // the caller holds the lock
  } else if (args.includes("--force")) {
    const release = lockSync();
    try {
      b = await build();
    } finally {
      release();
    }
  } else {
    b = ensureBuilt();
  }
  process.stdout.write(`${relative(process.cwd(), b.dir) || "."} (${Math.round(performance.now() - t0)} ms)\n`);
}
