import { createHash } from "node:crypto";
import { cpSync, existsSync, lstatSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ETC_ALLOW, ETC_GENERATED, lexists } from "./sandbox-argv.ts";

/** Never copied, even inside an allowed directory: private keys stay where they are. */
const NEVER = new Set(["/etc/ssl/private"]);

/** Every path under the allowed entries, with what changes when the host updates them. */
function fingerprint(): string {
  const h = createHash("sha256");
  const walk = (p: string): void => {
    if (NEVER.has(p)) return;
    let st;
    try {
      st = lstatSync(p);
    } catch {
      return; // gone meanwhile, or absent on this host
    }
    h.update(`${p}\0${st.mode}\0${st.size}\0${st.mtimeMs}\0`);
    if (st.isDirectory()) for (const e of readdirSync(p).sort()) walk(join(p, e));
  };
  for (const f of ETC_ALLOW) walk(`/etc/${f}`);
  return h.digest("hex").slice(0, 16);
}

/**
 * The sandbox's /etc as one prepared directory, `<root>/.etc-<fingerprint>`: copies of the
 * allowed host files (ETC_ALLOW, never /etc/ssl/private) and the generated passwd, group and
 * hosts (from `generated`). One read-only bind of it costs a shell start far less than a bind per
 * file (36 of them took ~4.5 ms per open). Built once per content of the host's files: a worker
 * that finds it made (by another worker on the same root) uses it; a host update gives a new one.
 */
export function prepareEtcTree(root: string, generated: string): string {
  const tree = join(root, `.etc-${fingerprint()}`);
  if (existsSync(join(tree, "passwd"))) return tree;
  const tmp = `${tree}.tmp-${process.pid}-${Date.now()}`;
  mkdirSync(tmp, { mode: 0o755 });
  for (const f of ETC_ALLOW) {
    const src = `/etc/${f}`;
    if (!existsSync(src) && !lexists(src)) continue;
    cpSync(src, join(tmp, f), { recursive: true, verbatimSymlinks: true, preserveTimestamps: true, filter: (p) => !NEVER.has(p) });
  }
  for (const f of ETC_GENERATED) cpSync(join(generated, f), join(tmp, f));
  writeFileSync(join(tmp, ".molecule-etc"), "made by the local provider from the host's /etc: docs/terminal.md\n");
  try {
    renameSync(tmp, tree);
  } catch (err) {
    // Another worker made the same tree first: use theirs.
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(join(tree, "passwd"))) throw err;
  }
  return tree;
}
