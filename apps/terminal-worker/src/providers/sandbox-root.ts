import { chmodSync, existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { EGRESS_RESOLV_FILE } from "./sandbox-argv.ts";
import { EGRESS_RESOLV_CONF } from "./sandbox-egress.ts";

/** Where the sandbox root goes when the repository's `.molecule/sandboxes` is not reachable by the sandbox uids. */
export const SYSTEM_SANDBOX_ROOT = "/var/lib/molecule/sandboxes";

export const runsAsRoot = () => process.getuid?.() === 0;

/**
 * The first directory on the way to `path` (itself included when it exists) that an
 * unrelated uid cannot traverse (no "others" x bit), or null when all can.
 */
export function untraversableAncestor(path: string): string | null {
  const chain: string[] = [];
  for (let p = resolve(path); ; p = dirname(p)) {
    chain.unshift(p);
    if (p === dirname(p)) break;
  }
  for (const p of chain) {
    let mode: number;
    try {
      mode = statSync(p).mode;
    } catch {
      return null; // the rest does not exist yet: we create it traversable
    }
    if ((mode & 0o001) === 0) return p;
  }
  return null;
}

/** The default root: the repository's when the sandbox uids can reach it, else (as root) the system one. */
export function defaultSandboxRoot(repoRoot: string): string {
  if (!runsAsRoot()) return repoRoot;
  // The root itself is ours to chmod 0711; only its ancestors matter.
  return untraversableAncestor(dirname(repoRoot)) === null ? repoRoot : SYSTEM_SANDBOX_ROOT;
}

/**
 * Makes the sandbox root traversable but not listable (0711; its parents must let
 * others through, checked here), and writes the passwd, group and hosts every
 * sandbox sees as its /etc's (`<root>/.etc`, never the host's). Returns that dir.
 */
export function prepareSandboxRoot(root: string, o: { shell: string; checkTraversable: boolean }): string {
  mkdirSync(root, { recursive: true, mode: 0o711 });
  if (o.checkTraversable) {
    chmodSync(root, 0o711);
    const bad = untraversableAncestor(root);
    if (bad !== null) {
      throw new Error(
        `the sandbox root ${root} is not reachable by the sandbox uids: ${bad} has no x permission for others ` +
          `(chmod o+x ${bad}, or set MOLECULE_SANDBOX_ROOT to a directory outside it, e.g. ${SYSTEM_SANDBOX_ROOT})`,
      );
    }
  }
  const etc = join(root, ".etc");
  mkdirSync(etc, { recursive: true, mode: 0o755 });
  chmodSync(etc, 0o755);
  const files: Record<string, string> = {
    passwd: `root:x:0:0:root:/root:${o.shell}\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n`,
    group: "root:x:0:\nnogroup:x:65534:\n",
    hosts: "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    [EGRESS_RESOLV_FILE]: EGRESS_RESOLV_CONF,
  };
  for (const [name, text] of Object.entries(files)) {
    const p = join(etc, name);
    writeFileSync(p, text, { mode: 0o644 });
    chmodSync(p, 0o644);
  }
  if (!existsSync(join(etc, "passwd"))) throw new Error(`cannot write ${etc}`);
  return etc;
}
