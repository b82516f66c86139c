import { hostname } from "node:os";
import { z } from "zod";
import { baseEnvSchema, boolish, parseEnv } from "@molecule/shared";
import { recordingEnvSchema } from "@molecule/shared/recording/settings";

const int = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);

/** The only place the API reads process.env. */
export const apiEnvSchema = baseEnvSchema.extend({
  ...recordingEnvSchema.shape,
  PORT: int(8080, 0),
  HOST: z.string().default("127.0.0.1"),
  MOLECULE_NODE_ID: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).default(`api-${hostname()}-${process.pid}`),
  /** GET /workspaces/:id without a token answers {id, status} (the tutorial's poll loop). */
  MOLECULE_PUBLIC_STATUS: boolish.default(true),
  MOLECULE_BODY_LIMIT_BYTES: int(64 * 1024, 1),
  /** Workspace creations allowed per org per minute. */
  MOLECULE_CREATE_RATE_PER_MIN: int(60, 1),
  /** Comma-separated origins allowed to open a terminal WebSocket (same-origin is always allowed). */
  MOLECULE_ALLOWED_ORIGINS: z.string().default(""),
  MOLECULE_CANVAS_DIR: z.string().optional(),
  MOLECULE_BOOTSTRAP_TOKEN: z.string().optional(),
  // Terminal
  MOLECULE_CLAIM_TIMEOUT_MS: int(10_000, 100),
  MOLECULE_WINDOW_BYTES: int(512 * 1024, 1024),
  MOLECULE_MAX_FRAME_BYTES: int(1024 * 1024, 1024),
  MOLECULE_TICKET_TTL_SEC: int(60, 1),
  /** Per-session input budget; a client sending faster is slowed down (its socket paused), others unaffected. */
  MOLECULE_INPUT_BYTES_PER_SEC: int(1024 * 1024, 1024),
  MOLECULE_INPUT_MSGS_PER_SEC: int(2000, 10),
  // Missing worker heartbeat this long (after its 3 s TTL) means worker_lost: noticed within ~4.5 s.
  MOLECULE_WORKER_LOST_MS: int(1000, 200),
  MOLECULE_SHUTDOWN_GRACE_MS: int(5000, 0),
  /** Controlplane backend: with both set, new workspaces are EC2 instances (the worker checks the rest of the AWS settings). */
  MOLECULE_ORG_ID: z.string().optional(),
  MOLECULE_AWS_AMI_ID: z.string().optional(),
});
export type ApiEnv = z.infer<typeof apiEnvSchema>;

/** The provider stamped on new workspaces: `aws` when the controlplane backend is configured, else MOLECULE_PROVIDER. */
export function workspaceProvider(env: ApiEnv): ApiEnv["MOLECULE_PROVIDER"] {
  return env.MOLECULE_ORG_ID && env.MOLECULE_AWS_AMI_ID ? "aws" : env.MOLECULE_PROVIDER;
}

export function loadApiEnv(env: Record<string, string | undefined> = process.env): ApiEnv {
  return parseEnv(apiEnvSchema, env);
}
