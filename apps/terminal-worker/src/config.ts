import type { Logger } from "@molecule/shared";
import { dockerChildEnv, type WorkerEnv } from "./env.ts";
import type { DockerProviderOptions, LocalProviderOptions } from "./providers/index.ts";
import { defaultBlockedCidrs, egressArgv, egressAvailable } from "./providers/sandbox-egress.ts";
import type { WorkerConfig } from "./worker.ts";

/** The worker's settings from its environment: the one mapping, used by main.ts and the test stacks alike. */
export function workerConfigFromEnv(env: WorkerEnv): WorkerConfig {
  return {
    ns: env.MOLECULE_REDIS_PREFIX,
    workerId: env.MOLECULE_WORKER_ID,
    capacity: env.MOLECULE_WORKER_CAPACITY,
    provisionConcurrency: env.MOLECULE_PROVISION_CONCURRENCY,
    provisionLockMs: env.MOLECULE_PROVISION_LOCK_MS,
    provisionTimeoutMs: env.MOLECULE_PROVISION_TIMEOUT_MS,
    replayWindowBytes: env.MOLECULE_REPLAY_WINDOW_BYTES,
    orphanGraceMs: env.MOLECULE_ORPHAN_GRACE_MS,
    idleTimeoutMs: env.MOLECULE_IDLE_TIMEOUT_MS,
    maxSessionMs: env.MOLECULE_MAX_SESSION_MS,
    drainTimeoutMs: env.MOLECULE_DRAIN_TIMEOUT_MS,
    spareShells: env.MOLECULE_SPARE_SHELLS,
    spareShellIdleMs: env.MOLECULE_SPARE_SHELL_IDLE_MS,
    terminal: env.MOLECULE_TERMINAL_ENABLED,
    provisioning: env.MOLECULE_PROVISIONING_ENABLED,
  };
}

/** The local provider's options (sandbox root, bubblewrap, network, uids, limits). */
export function localOptionsFromEnv(env: WorkerEnv, log: Logger): LocalProviderOptions {
  return {
    root: env.MOLECULE_SANDBOX_ROOT,
    bwrap: env.MOLECULE_SANDBOX_BWRAP,
    shell: env.MOLECULE_SHELL,
    user: env.USER,
    provisionDelayMs: env.MOLECULE_LOCAL_PROVISION_DELAY_MS,
    network: env.MOLECULE_SANDBOX_NETWORK,
    // Egress only where pasta can start: without it the provider refuses to start rather than run shells offline.
    egressWrap:
      env.MOLECULE_SANDBOX_NETWORK === "egress" && egressAvailable(env.MOLECULE_SANDBOX_UID_BASE)
        ? (argv: string[]) => egressArgv(argv, { blocked: defaultBlockedCidrs() })
        : undefined,
    uids: { base: env.MOLECULE_SANDBOX_UID_BASE, count: env.MOLECULE_SANDBOX_UID_COUNT },
    limits: { pids: env.MOLECULE_SANDBOX_PIDS, memoryBytes: env.MOLECULE_SANDBOX_MEMORY, cpuShares: env.MOLECULE_SANDBOX_CPU_SHARES, fileSizeBytes: env.MOLECULE_SANDBOX_FILE_SIZE },
    log,
  };
}

/** The docker provider's options. */
export function dockerOptionsFromEnv(env: WorkerEnv, log: Logger): DockerProviderOptions {
  return {
    bin: env.MOLECULE_DOCKER_BIN,
    image: env.MOLECULE_DOCKER_IMAGE,
    images: env.MOLECULE_DOCKER_IMAGES,
    network: env.MOLECULE_DOCKER_NETWORK,
    egress: env.MOLECULE_DOCKER_EGRESS,
    limits: env.MOLECULE_DOCKER_LIMITS,
    defaultLimits: { cpus: env.MOLECULE_DOCKER_CPUS, memory: env.MOLECULE_DOCKER_MEMORY },
    pidsLimit: env.MOLECULE_DOCKER_PIDS_LIMIT,
    env: dockerChildEnv(),
    log,
  };
}
