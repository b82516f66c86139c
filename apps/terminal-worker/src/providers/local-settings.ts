import { statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { CgroupLimits } from "./sandbox-limits.ts";
import type { UidRange } from "./sandbox-uid.ts";

/** The local provider's defaults and setting formats, with no provider code: env.ts and local.ts both import them from here. */

export interface SandboxLimits extends CgroupLimits {
  /** RLIMIT_FSIZE: the largest file a sandbox process may write. */
  fileSizeBytes: number;
}

export const DEFAULT_SANDBOX_LIMITS: SandboxLimits = {
  pids: 512,
  memoryBytes: 2 * 1024 ** 3,
  cpuShares: 1024,
  fileSizeBytes: 10 * 1024 ** 3,
};
export const DEFAULT_UID_RANGE: UidRange = { base: 200_000, count: 65_536 };

/** "512m", "2g", "1048576" → bytes (k/m/g/t are powers of 1024); null when malformed. */
export function parseSize(s: string): number | null {
  const m = /^\s*(\d+)\s*([kmgt]?)i?b?\s*$/i.exec(s);
  if (!m) return null;
  const exp = { "": 0, k: 1, m: 2, g: 3, t: 4 }[m[2]!.toLowerCase() as "" | "k" | "m" | "g" | "t"];
  const n = Number(m[1]) * 1024 ** exp;
  return Number.isSafeInteger(n) && n > 0 ? n : null;
}

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
