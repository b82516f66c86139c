import { hostname } from "node:os";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { baseEnvSchema, boolish, parseEnv } from "@molecule/shared";

const int = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);
const defaultSandboxRoot = fileURLToPath(new URL("../../../.molecule/sandboxes", import.meta.url));

/** The only place the worker reads process.env. */
export const workerEnvSchema = baseEnvSchema.extend({
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
  // local provider
  MOLECULE_SANDBOX_ROOT: z.string().default(defaultSandboxRoot),
  /** Use bubblewrap when installed (auto), always (on: fail if missing), or never (off). */
  MOLECULE_SANDBOX_BWRAP: z.enum(["auto", "on", "off"]).default("auto"),
  MOLECULE_LOCAL_PROVISION_DELAY_MS: int(0, 0),
  MOLECULE_SHELL: z.string().default("/bin/bash"),
  MOLECULE_TERMINAL_ENABLED: boolish.default(true),
  MOLECULE_PROVISIONING_ENABLED: boolish.default(true),
  /** Prometheus GET /metrics on this port; 0 = no metrics server (the default). */
  MOLECULE_METRICS_PORT: int(0, 0),
  MOLECULE_METRICS_HOST: z.string().default("127.0.0.1"),
});
export type WorkerEnv = z.infer<typeof workerEnvSchema>;

export function loadWorkerEnv(env: Record<string, string | undefined> = process.env): WorkerEnv {
  return parseEnv(workerEnvSchema, env);
}
