import { createDb, createLogger, createRedis, createWriterFor, handleShutdownSignals, migrateDatabase, redisTarget } from "@molecule/shared";
import { createApi } from "./app.ts";
import { apiConfigFromEnv } from "./config.ts";
import { loadApiEnv } from "./env.ts";
import { bootstrapDefaultOrg } from "./orgs.ts";
import { createRecordingStore, recordingConfigFromEnv } from "@molecule/shared/recording/settings";

const env = loadApiEnv();
const log = createLogger("api", env.LOG_LEVEL).child({ node: env.MOLECULE_NODE_ID });

await migrateDatabase(env.DATABASE_URL);
const db = createDb(env.DATABASE_URL);
// REST calls fail within a few seconds while Redis is down instead of hanging.
// REDIS_CLUSTER_NODES, when set, makes these Redis Cluster connections (config.ts).
const target = redisTarget(env);
const redis = createRedis(target, { maxRetriesPerRequest: 10, connectionName: `${env.MOLECULE_NODE_ID}:cmd` });
const sub = createRedis(target, { connectionName: `${env.MOLECULE_NODE_ID}:sub` });
const writer = createWriterFor(target, { name: `${env.MOLECULE_NODE_ID}:in`, log });
for (const [name, r] of [["redis", redis], ["redis-sub", sub]] as const) {
  r.on("error", (err) => log.warn({ err, conn: name }, "redis connection error"));
}

const boot = await bootstrapDefaultOrg(db.db, env.MOLECULE_BOOTSTRAP_TOKEN);
if (boot) log.info({ org_id: boot.orgId }, "created the default org");

const recordingConfig = recordingConfigFromEnv(env);
const api = createApi({
  config: apiConfigFromEnv(env),
  db,
  redis,
  sub,
  writer,
  log,
  ...(recordingConfig ? { recording: await createRecordingStore(recordingConfig.store) } : {}),
});
const port = await api.listen(env.PORT, env.HOST);
log.info({ url: `http://${env.HOST}:${port}` }, "api listening");
// Machine-readable line for launchers and tests.
process.stdout.write(`${JSON.stringify({ event: "listening", port, ...(boot ? { token: boot.token } : {}) })}\n`);

handleShutdownSignals({
  log,
  message: "shutting down: terminal clients get 1012 and re-attach elsewhere",
  hardLimitMs: env.MOLECULE_SHUTDOWN_GRACE_MS + 5000,
  close: () => api.close(),
  connections: [() => db.close(), () => redis.quit(), () => sub.quit(), () => writer.close()],
});
