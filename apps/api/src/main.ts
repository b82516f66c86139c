import { createDb, createLogger, createRedis, createRedisWriter, migrateDatabase } from "@molecule/shared";
import { createApi } from "./app.ts";
import { loadApiEnv, workspaceProvider } from "./env.ts";
import { bootstrapDefaultOrg } from "./orgs.ts";

const env = loadApiEnv();
const log = createLogger("api", env.LOG_LEVEL).child({ node: env.MOLECULE_NODE_ID });

await migrateDatabase(env.DATABASE_URL);
const db = createDb(env.DATABASE_URL);
// REST calls fail within a few seconds while Redis is down instead of hanging.
const redis = createRedis(env.REDIS_URL, { maxRetriesPerRequest: 10, connectionName: `${env.MOLECULE_NODE_ID}:cmd` });
const sub = createRedis(env.REDIS_URL, { connectionName: `${env.MOLECULE_NODE_ID}:sub` });
const writer = createRedisWriter({ url: env.REDIS_URL, name: `${env.MOLECULE_NODE_ID}:in`, log });
for (const [name, r] of [["redis", redis], ["redis-sub", sub]] as const) {
  r.on("error", (err) => log.warn({ err: err.message, conn: name }, "redis connection error"));
}

const boot = await bootstrapDefaultOrg(db.db, env.MOLECULE_BOOTSTRAP_TOKEN);
if (boot) log.info({ org_id: boot.orgId }, "created the default org");

const api = createApi({
  config: {
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
  },
  db,
  redis,
  sub,
  writer,
  log,
});
const port = await api.listen(env.PORT, env.HOST);
log.info({ url: `http://${env.HOST}:${port}` }, "api listening");
// Machine-readable line for launchers and tests.
process.stdout.write(`${JSON.stringify({ event: "listening", port, ...(boot ? { token: boot.token } : {}) })}\n`);

let stopping = false;
async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, "shutting down: terminal clients get 1012 and re-attach elsewhere");
  const hard = setTimeout(() => process.exit(1), env.MOLECULE_SHUTDOWN_GRACE_MS + 5000);
  hard.unref();
  await api.close().catch((err) => log.error({ err }, "close failed"));
  await Promise.allSettled([db.close(), redis.quit(), sub.quit(), writer.close()]);
  process.exit(0);
}
process.on("SIGTERM", () => void stop("SIGTERM"));
process.on("SIGINT", () => void stop("SIGINT"));
