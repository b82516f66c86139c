import type { CgroupLimits } from "./sandbox-limits.ts";
import type { UidRange } from "./sandbox-uid.ts";

/** The local provider's defaults, with no provider code: env.ts and local.ts both import them from here. */

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
