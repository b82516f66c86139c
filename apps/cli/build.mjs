// Bundles the CLI into dist/ for plain Node 20 (no tsx at run time). Commands are split into
// chunks loaded on first use, so `molecule --version` parses almost nothing.
import { readFileSync, rmSync } from "node:fs";
import { resolve } from "node:path";
import { build } from "esbuild";

const pkg = JSON.parse(readFileSync(new URL("./package.json", import.meta.url), "utf8"));
// `node build.mjs [outdir]`: tests build into a directory of their own.
const outdir = process.argv[2] ? resolve(process.argv[2]) : new URL("./dist", import.meta.url).pathname;
rmSync(outdir, { recursive: true, force: true });
await build({
  entryPoints: { molecule: new URL("./src/main.ts", import.meta.url).pathname },
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  chunkNames: "chunks/[name]-[hash]",
  // ws's optional native helpers: it runs without them.
  external: ["bufferutil", "utf-8-validate"],
  define: { __MOLECULE_CLI_VERSION__: JSON.stringify(pkg.version) },
  // CommonJS dependencies (ws) call require() for Node's modules; ESM has none of its own.
  banner: { js: 'import { createRequire as __molCreateRequire } from "node:module"; const require = __molCreateRequire(import.meta.url);' },
  legalComments: "none",
  logLevel: "warning",
});
