import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { baseEnvSchema, boolish, OS_USER_RE, parseEnv } from "@molecule/shared";
import { recordingEnvSchema } from "@molecule/shared/recording/settings";
import * as aws from "./providers/aws/config.ts";
import * as docker from "./providers/docker-settings.ts";
import { DEFAULT_SANDBOX_LIMITS, DEFAULT_UID_RANGE, defaultSandboxRoot, parseSize } from "./providers/local-settings.ts";

const int = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);
const repoSandboxRoot = fileURLToPath(new URL("../../../.molecule/sandboxes", import.meta.url));
const size = (def: string) => z.string().default(def).transform(aws.zodParse((v: string) => {
  const n = parseSize(v);
  if (n === null) throw new Error(`expected a size like 512m or 2g, got ${JSON.stringify(v)}`);
  return n;
}));

/** The only place the worker reads process.env. */
export const workerEnvSchema = baseEnvSchema.extend({
  ...recordingEnvSchema.shape,
  MOLECULE_WORKER_ID: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).default(`worker-${hostname()}-${process.pid}`),
  /** Terminal sessions this worker holds at once (BullMQ concurrency). */
  MOLECULE_WORKER_CAPACITY: int(200, 1),
  MOLECULE_PROVISION_CONCURRENCY: int(8, 1),
  MOLECULE_PROVISION_TIMEOUT_MS: int(300_000, 1000),
  /** BullMQ lock for provisioning jobs: a crashed worker's job is picked up again after this. */
  MOLECULE_PROVISION_LOCK_MS: int(30_000, 1000),
  MOLECULE_ORPHAN_GRACE_MS: int(60_000, 0),
  MOLECULE_IDLE_TIMEOUT_MS: int(30 * 60_000, 1000),
  MOLECULE_MAX_SESSION_MS: int(12 * 3600_000, 1000),
  MOLECULE_REPLAY_WINDOW_BYTES: int(1024 * 1024, 4096),
  MOLECULE_DRAIN_TIMEOUT_MS: int(10_000, 0),
  /** Sandboxed shells started ahead of time, two per recently used workspace: at most this many (0: none). */
  MOLECULE_SPARE_SHELLS: int(64, 0),
  /** A spare shell nobody takes for this long is stopped. */
  MOLECULE_SPARE_SHELL_IDLE_MS: int(10 * 60_000, 1000),
  // local provider
  /** Default: the repository's .molecule/sandboxes, or as root /var/lib/molecule/sandboxes when sandbox uids cannot reach that. */
  MOLECULE_SANDBOX_ROOT: z.string().optional().transform((v) => v ?? defaultSandboxRoot(repoSandboxRoot)),
  /** Every shell under bubblewrap or none (on), bubblewrap when usable (auto), never (off: no tenant boundary). */
  MOLECULE_SANDBOX_BWRAP: z.enum(["auto", "on", "off"]).default("on"),
  /** none: the shell's network namespace has only its own loopback; egress: outbound through a user-mode stack. */
  MOLECULE_SANDBOX_NETWORK: z.enum(["none", "egress"]).default("none"),
  /** As root, workspace shells run as host uid BASE + a slot of COUNT claimed per workspace. */
  MOLECULE_SANDBOX_UID_BASE: int(DEFAULT_UID_RANGE.base, 1000),
  MOLECULE_SANDBOX_UID_COUNT: int(DEFAULT_UID_RANGE.count, 1),
  /** Per workspace: processes (pids cgroup and RLIMIT_NPROC), memory (cgroup), CPU share (cgroup), largest file (RLIMIT_FSIZE). */
  MOLECULE_SANDBOX_PIDS: int(DEFAULT_SANDBOX_LIMITS.pids, 16),
  MOLECULE_SANDBOX_MEMORY: size("2g"),
  MOLECULE_SANDBOX_CPU_SHARES: int(DEFAULT_SANDBOX_LIMITS.cpuShares, 2),
  MOLECULE_SANDBOX_FILE_SIZE: size("10g"),
  MOLECULE_LOCAL_PROVISION_DELAY_MS: int(0, 0),
  MOLECULE_SHELL: z.string().default("/bin/bash"),
  /** The worker's own user: USER of unsandboxed local shells. */
  USER: z.string().optional(),
  MOLECULE_TERMINAL_ENABLED: boolish.default(true),
  MOLECULE_PROVISIONING_ENABLED: boolish.default(true),
  /** Prometheus GET /metrics on this port; 0 = no metrics server (the default). */
  MOLECULE_METRICS_PORT: int(0, 0),
  MOLECULE_METRICS_HOST: z.string().default("127.0.0.1"),
  // aws provider (controlplane backend): docs/infra/workspace-terminal.md
  MOLECULE_ORG_ID: z.string().regex(aws.ORG_ID_RE).optional(),
  MOLECULE_AWS_REGION: z.string().regex(aws.REGION_RE).optional(),
  // Checked only when the aws provider uses them: other tools on the host may set them too.
  AWS_REGION: z.string().optional(),
  AWS_DEFAULT_REGION: z.string().optional(),
  MOLECULE_AWS_AMI_ID: z.string().regex(aws.AMI_ID_RE).optional(),
  MOLECULE_AWS_SUBNET_ID: z.string().regex(aws.SUBNET_ID_RE).optional(),
  MOLECULE_AWS_SECURITY_GROUP_ID: z.string().regex(aws.SECURITY_GROUP_ID_RE).optional(),
  /** tier=instance-type pairs; Nitro types only. */
  MOLECULE_AWS_INSTANCE_TYPES: z.string().default(aws.DEFAULT_INSTANCE_TYPES).transform(aws.zodParse(aws.parseInstanceTypes)),
  MOLECULE_AWS_INSTANCE_PROFILE: z.string().regex(aws.INSTANCE_PROFILE_RE).optional(),
  MOLECULE_AWS_RUNTIME_IMAGE: z.string().regex(aws.IMAGE_RE).default(aws.DEFAULT_RUNTIME_IMAGE),
  MOLECULE_AWS_OS_USER: z.string().regex(OS_USER_RE).default("ec2-user"),
  /** Extra ssh options, space-separated Key=Value. */
  MOLECULE_AWS_SSH_OPTIONS: z.string().default("").transform(aws.zodParse(aws.parseSshOptions)),
  MOLECULE_AWS_SSH_KEEPALIVE_SEC: int(15, 1),
  MOLECULE_AWS_SSH_KEEPALIVE_COUNT: int(4, 1),
  MOLECULE_AWS_SSH_CONNECT_TIMEOUT_SEC: int(20, 1),
  MOLECULE_AWS_TUNNEL_MAX_SEC: z.coerce.number().int().min(1).max(3600).default(3600),
  /** The EIC tunnel: native (built in, no aws-cli) or aws-cli (`aws ec2-instance-connect open-tunnel`). */
  MOLECULE_AWS_TUNNEL: z.enum(["native", "aws-cli"]).default("native"),
  /** Endpoint overrides (local fakes in tests). */
  MOLECULE_AWS_EC2_ENDPOINT: z.string().url().optional(),
  MOLECULE_AWS_EIC_ENDPOINT: z.string().url().optional(),
  MOLECULE_AWS_KEY_DIR: z.string().default(join(tmpdir(), "molecule-eic-keys")),
  MOLECULE_AWS_CLI: z.string().regex(aws.EXECUTABLE_RE).default("aws"),
  MOLECULE_SSH_BIN: z.string().regex(aws.EXECUTABLE_RE).default("ssh"),
  MOLECULE_AWS_READY_TIMEOUT_MS: int(240_000, 1000),
  MOLECULE_AWS_POLL_MS: int(5000, 50),
  // docker provider (one container per workspace): docs/deployment.md#the-docker-provider
  MOLECULE_DOCKER_BIN: z.string().regex(aws.EXECUTABLE_RE).default("docker"),
  /** Image of every runtime; `{runtime}` is replaced by the workspace runtime. */
  MOLECULE_DOCKER_IMAGE: z.string().default(docker.DEFAULT_DOCKER_IMAGE).transform(aws.zodParse(docker.checkImageTemplate)),
  /** runtime=image pairs overriding MOLECULE_DOCKER_IMAGE. */
  MOLECULE_DOCKER_IMAGES: z.string().default("").transform(aws.zodParse(docker.parseRuntimeImages)),
  /** The workspaces' own bridge network, created when missing; refused when other containers are on it. */
  MOLECULE_DOCKER_NETWORK: z.string().regex(docker.NETWORK_RE).default(docker.DEFAULT_DOCKER_NETWORK),
  /** Outbound connectivity of workspace containers; off: an --internal network. */
  MOLECULE_DOCKER_EGRESS: boolish.default(true),
  /** tier=cpus:memory pairs (e.g. 1=1:1g,2=2:4g); what a tier does not set comes from the two below. */
  MOLECULE_DOCKER_LIMITS: z.string().default("").transform(aws.zodParse(docker.parseTierLimits)),
  MOLECULE_DOCKER_CPUS: z.string().regex(docker.CPUS_RE).refine((v) => Number(v) > 0, "must be more than 0").default(docker.DEFAULT_CPUS),
  MOLECULE_DOCKER_MEMORY: z.string().toLowerCase().regex(docker.MEMORY_RE).default(docker.DEFAULT_MEMORY),
  MOLECULE_DOCKER_PIDS_LIMIT: int(docker.DEFAULT_PIDS_LIMIT, 16),
});

/** The worker's environment restricted to PATH, HOME, proxies and the variables `own` matches. */
function passEnv(raw: Record<string, string | undefined>, own: RegExp): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (v !== undefined && (own.test(k) || /^(PATH|HOME|HTTPS?_PROXY|NO_PROXY|https?_proxy|no_proxy)$/.test(k))) out[k] = v;
  }
  return out;
}

/** What ssh and aws-cli may see of the worker's environment: PATH, HOME, proxies and AWS_* (credential chain). */
export function awsChildEnv(raw: Record<string, string | undefined> = process.env): Record<string, string> {
  return passEnv(raw, /^AWS_/);
}

/** What the docker CLI may see: PATH, HOME, proxies and DOCKER_* (daemon address, TLS, config directory). */
export function dockerChildEnv(raw: Record<string, string | undefined> = process.env): Record<string, string> {
  return passEnv(raw, /^DOCKER_/);
}
export type WorkerEnv = z.infer<typeof workerEnvSchema>;

export function loadWorkerEnv(env: Record<string, string | undefined> = process.env): WorkerEnv {
  return parseEnv(workerEnvSchema, env);
}
