import { execFile } from "node:child_process";
export { findExecutable } from "../executables.ts";

export interface CliCheck {
  ok: boolean;
  /** Why the Terminal cannot use this aws-cli (when !ok). */
  problem?: string;
  version?: string;
}

/** open-tunnel arrived in aws-cli 2.12.0. */
export function awsCliSupportsOpenTunnel(versionLine: string): CliCheck {
  const m = /aws-cli\/(\d+)\.(\d+)\.(\d+)/.exec(versionLine);
  if (!m) return { ok: false, problem: `could not read the aws-cli version from ${JSON.stringify(versionLine.trim().slice(0, 120))}` };
  const [maj, min] = [Number(m[1]), Number(m[2])];
  const version = `${m[1]}.${m[2]}.${m[3]}`;
  if (maj < 2 || (maj === 2 && min < 12)) {
    return { ok: false, version, problem: `aws-cli ${version} has no "ec2-instance-connect open-tunnel"; install aws-cli v2 (2.12 or later)` };
  }
  return { ok: true, version };
}

/**
 * Checks once per binary (and again after a failure, at most every `recheckMs`)
 * that aws-cli v2 with open-tunnel is what the worker would run.
 */
export function createCliChecker(env: Record<string, string>, recheckMs = 10_000) {
  const cache = new Map<string, { at: number; res: CliCheck }>();
  return async function checkAwsCli(file: string): Promise<CliCheck> {
    const hit = cache.get(file);
    if (hit && (hit.res.ok || Date.now() - hit.at < recheckMs)) return hit.res;
    const res = await new Promise<CliCheck>((resolve) => {
      execFile(file, ["--version"], { env, timeout: 15_000 }, (err, stdout, stderr) => {
        const out = `${stdout}${stderr}`;
        if (err && !/aws-cli\//.test(out)) resolve({ ok: false, problem: `"${file} --version" failed: ${(err as Error).message.split("\n")[0]}` });
        else resolve(awsCliSupportsOpenTunnel(out));
      });
    });
    cache.set(file, { at: Date.now(), res });
    return res;
  };
}
