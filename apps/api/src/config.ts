import type { ApiConfig } from "./app.ts";
import { workspaceProvider, type ApiEnv } from "./env.ts";

/** The API's settings from its environment: the one mapping, used by main.ts and the test stacks alike. */
export function apiConfigFromEnv(env: ApiEnv): ApiConfig {
  return {
    ns: env.MOLECULE_REDIS_PREFIX,
    nodeId: env.MOLECULE_NODE_ID,
    provider: workspaceProvider(env),
    publicStatus: env.MOLECULE_PUBLIC_STATUS,
    bodyLimitBytes: env.MOLECULE_BODY_LIMIT_BYTES,
    createRatePerMin: env.MOLECULE_CREATE_RATE_PER_MIN,
    ticketTtlSec: env.MOLECULE_TICKET_TTL_SEC,
    canvasDir: env.MOLECULE_CANVAS_DIR,
    windowBytes: env.MOLECULE_WINDOW_BYTES,
    maxFrameBytes: env.MOLECULE_MAX_FRAME_BYTES,
    claimTimeoutMs: env.MOLECULE_CLAIM_TIMEOUT_MS,
    inputBytesPerSec: env.MOLECULE_INPUT_BYTES_PER_SEC,
    inputMsgsPerSec: env.MOLECULE_INPUT_MSGS_PER_SEC,
    workerLostMs: env.MOLECULE_WORKER_LOST_MS,
    allowedOrigins: env.MOLECULE_ALLOWED_ORIGINS.split(",").map((s) => s.trim()).filter(Boolean),
  };
}
