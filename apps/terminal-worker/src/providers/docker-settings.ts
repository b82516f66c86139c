import { RUNTIMES } from "@molecule/shared";

/**
 * The docker provider's settings: formats, defaults and parsers, with no provider
 * code, so env.ts (which reads them) and docker.ts (which uses them) both import
 * them from here.
 */

// A docker image reference, strictly: [registry[:port]/]path[:tag][@sha256:digest]
// (the reference grammar of the distribution spec). It can never start with "-".
const DOMAIN_PART = "[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?";
const PATH_PART = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
export const IMAGE_REF_RE = new RegExp(
  `^(?:${DOMAIN_PART}(?:\\.${DOMAIN_PART})*(?::[0-9]{1,5})?/)?${PATH_PART}(?:/${PATH_PART})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$`,
);
/** A docker network name (as docker accepts for container names). */
export const NETWORK_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;
export const CPUS_RE = /^(?:[0-9]{1,3})(?:\.[0-9]{1,2})?$/;
export const MEMORY_RE = /^[1-9][0-9]{0,6}[kmg]$/;

export const DEFAULT_DOCKER_IMAGE = "debian:bookworm-slim";
/** The workspaces' own bridge network (created when missing): never the compose network. */
export const DEFAULT_DOCKER_NETWORK = "molecule-workspaces";
/** Limits of every container whose tier sets none: processes, memory (swap included), CPUs. */
export const DEFAULT_PIDS_LIMIT = 512;
export const DEFAULT_MEMORY = "2g";
export const DEFAULT_CPUS = "2";

export interface TierLimits {
  /** `--cpus` value, e.g. "2" or "0.5". */
  cpus?: string;
  /** `--memory` value, e.g. "4g". */
  memory?: string;
}

/** Parses `runtime=image,runtime=image` (runtimes known, images valid references). */
export function parseRuntimeImages(spec: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of spec.split(",").map((s) => s.trim()).filter(Boolean)) {
    const m = /^([a-z0-9-]+)\s*=\s*(\S+)$/.exec(part);
    if (!m) throw new Error(`"${part}" is not runtime=image (e.g. hermes=debian:bookworm-slim)`);
    if (!(RUNTIMES as readonly string[]).includes(m[1]!)) throw new Error(`unknown runtime "${m[1]}" (one of ${RUNTIMES.join(", ")})`);
    checkImageTemplate(m[2]!);
    out[m[1]!] = m[2]!;
  }
  return out;
}

/** Parses `tier=cpus:memory` pairs, e.g. `1=1:1g,2=2:4g` (either side may be empty). */
export function parseTierLimits(spec: string): Record<number, TierLimits> {
  const out: Record<number, TierLimits> = {};
  for (const part of spec.split(",").map((s) => s.trim()).filter(Boolean)) {
    const m = /^([1-4])\s*=\s*([^:\s]*):([^:\s]*)$/.exec(part);
    if (!m) throw new Error(`"${part}" is not tier=cpus:memory (e.g. 2=2:4g)`);
    const [cpus, memory] = [m[2]!, m[3]!.toLowerCase()];
    if (cpus && (!CPUS_RE.test(cpus) || Number(cpus) <= 0)) throw new Error(`"${cpus}" is not a CPU count (e.g. 2 or 0.5)`);
    if (memory && !MEMORY_RE.test(memory)) throw new Error(`"${memory}" is not a memory size (e.g. 512m or 4g)`);
    out[Number(m[1])] = { ...(cpus ? { cpus } : {}), ...(memory ? { memory } : {}) };
  }
  return out;
}

/** Throws unless `template` is an image reference once `{runtime}` is filled in. */
export function checkImageTemplate(template: string): string {
  if (!IMAGE_REF_RE.test(template.replaceAll("{runtime}", "runtime"))) {
    throw new Error(`"${template}" is not a docker image reference (e.g. debian:bookworm-slim or registry.example/team/image:1)`);
  }
  return template;
}
