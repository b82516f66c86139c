import { existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { sep } from "node:path";
import { fileURLToPath } from "node:url";
import express from "express";
import type { Redis } from "ioredis";
import { createHub, NotFoundError, queueConnection, type DbHandle, type Logger, type ProviderName, type RedisWriter } from "@molecule/shared";
import { createAuthenticator } from "./auth.ts";
import { errorHandler } from "./error-handler.ts";
import { bodyGuard, jsonClientErrors, methodNotAllowed } from "./http-guards.ts";
import { createMetrics } from "./metrics.ts";
import { buildOpenApi } from "./openapi.ts";
import { createProvisioner } from "./provisioner.ts";
import { createRateLimiter } from "./rate-limit.ts";
import { requestContext } from "./request-context.ts";
import { eventRoutes } from "./routes/events.ts";
import { healthRoutes } from "./routes/health.ts";
import { referenceRoutes } from "./routes/reference.ts";
import { recordingRoutes } from "./routes/recordings.ts";
import { terminalSessionRoutes } from "./routes/terminal-sessions.ts";
import { workspaceRoutes } from "./routes/workspaces.ts";
import { createTerminalGateway, type GatewayConfig } from "./terminal/gateway.ts";
import { terminalRoutes } from "./terminal/routes.ts";
import { createTickets } from "./terminal/tickets.ts";
import { periodic, realTimers, type Timers } from "./terminal/timers.ts";
import { recoverRecordings, sweepRecordings, type RecordingStore } from "@molecule/shared/recording/index";

/** How often a node deletes recordings past their org's retention. */
const RETENTION_SWEEP_MS = 3600_000;

export interface ApiConfig extends Omit<GatewayConfig, "ns"> {
  ns: string;
  provider: ProviderName;
  publicStatus: boolean;
  bodyLimitBytes: number;
  createRatePerMin: number;
  ticketTtlSec: number;
  canvasDir?: string;
}

export interface ApiDeps {
  config: ApiConfig;
  db: DbHandle;
  /** Command connection (also used by BullMQ's Queue). */
  redis: Redis;
  /** Dedicated subscriber connection. */
  sub: Redis;
  /** Terminal input and control (CLIENT REPLY OFF). */
  writer: RedisWriter;
  log: Logger;
  /** The terminal watchdog's and audit sweeper's timers and clock (real ones by default; tests drive them). */
  timers?: Timers;
  /** Where session recordings are (served, and deleted past retention); absent, none are served. */
  recording?: RecordingStore;
}

const defaultCanvasDir = fileURLToPath(new URL("../../canvas/dist", import.meta.url));
const docsDir = fileURLToPath(new URL("../../../docs", import.meta.url));

/** The API node: REST routes, the terminal WebSocket gateway and the Canvas static files. */
export function createApi(deps: ApiDeps) {
  const { config: c, log } = deps;
  const db = deps.db.db;
  const redis = deps.redis;
  const hub = createHub(deps.sub, log);
  const auth = createAuthenticator(db, log);
  const tickets = createTickets(redis, c.ns, c.ticketTtlSec);
  // The queues' own connection (queueConnection says why), owned and closed here.
  const queueRedis = queueConnection(redis, (err) => log.warn({ err }, "redis (queues) connection error"));
  const provisioner = createProvisioner(queueRedis, c.ns, db);
  const metrics = createMetrics(c.nodeId);
  const gateway = createTerminalGateway({ db, redis, queueRedis, writer: deps.writer, hub, auth, tickets, log, config: c, metrics: metrics.terminal, timers: deps.timers });
  const openapi = buildOpenApi();

  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.use(requestContext(log));
  app.use(bodyGuard(c.bodyLimitBytes));
  // gzip, deflate and br bodies are inflated by the parsers; their limit counts inflated bytes.
  app.use(express.json({ limit: c.bodyLimitBytes, strict: true }));
  // Any other body type is read (bounded) and refused by the route with 415.
  app.use(express.raw({ type: () => true, limit: c.bodyLimitBytes }));
  app.use(healthRoutes({ sql: deps.db.sql, redis, isDraining: gateway.isDraining }));
  app.get("/openapi.json", (_req, res) => {
    res.json(openapi);
  });
  app.use(referenceRoutes());
  app.get("/metrics", async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  app.use(
    workspaceRoutes({
      db,
      auth,
      rateLimit: createRateLimiter(redis, c.ns),
      provisioner,
      provider: c.provider,
      publicStatus: c.publicStatus,
      createRatePerMin: c.createRatePerMin,
      endWorkspaceSessions: gateway.endWorkspaceSessions,
    }),
  );
  app.use(eventRoutes({ db, auth }));
  app.use(terminalSessionRoutes({ db, auth }));
  app.use(terminalRoutes({ db, auth, tickets }));
  app.use(recordingRoutes({ db, auth, log, store: deps.recording ?? null }));
  const store = deps.recording;
  const timers = deps.timers ?? realTimers;
  /** One round of the recording retention sweep at `now` (tests pass their own clock). */
  const sweepExpiredRecordings = (now = new Date(timers.now())) => (store ? sweepRecordings({ db, store, log }, now) : Promise.resolve(0));
  /** One round of completing recordings whose worker died (tests pass their own clock). */
  const recoverAbandonedRecordings = (now = new Date(timers.now())) => (store ? recoverRecordings({ db, store, log }, now) : Promise.resolve(0));
  const retention = periodic(
    timers,
    RETENTION_SWEEP_MS,
    async () => {
      await recoverAbandonedRecordings();
      await sweepExpiredRecordings();
    },
    (err) => log.warn({ err }, "recording retention sweep failed (retried next round)"),
  );
  const canvasDir = c.canvasDir ?? defaultCanvasDir;
  if (existsSync(canvasDir)) {
    // Vite's hashed asset names change with every build: cache them for good, and make
    // browsers revalidate index.html so a deploy is picked up at once.
    app.use(
      express.static(canvasDir, {
        index: "index.html",
        setHeaders: (res, path) =>
          res.setHeader("Cache-Control", path.includes(`${sep}assets${sep}`) ? "public, max-age=31536000, immutable" : "no-cache"),
      }),
    );
  }
  // User docs as plain text (the Canvas links to docs/infra/workspace-terminal.md for EIC set-up).
  if (existsSync(docsDir)) {
    app.use(
      "/docs",
      express.static(docsDir, { index: false, setHeaders: (res) => res.setHeader("Content-Type", "text/plain; charset=utf-8") }),
    );
  }
  app.use(methodNotAllowed(app));
  app.use((_req, _res, next) => next(new NotFoundError("route")));
  app.use(errorHandler(log));

  const server: Server = createServer(app);
  server.on("upgrade", gateway.handleUpgrade);
  jsonClientErrors(server, log);
  server.keepAliveTimeout = 65_000;

  return {
    app,
    server,
    gateway,
    provisioner,
    metrics,
    sweepExpiredRecordings,
    recoverAbandonedRecordings,
    listen(port: number, host: string): Promise<number> {
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          const addr = server.address();
          // Periodic work (watchdog, audit sweeper) runs only on a node that serves.
          gateway.start();
          // Only a node that serves recordings deletes them.
          if (store) retention.start();
          resolve(typeof addr === "object" && addr ? addr.port : port);
        });
      });
    },
    /** Graceful stop: terminal clients get 1012 (and re-attach elsewhere), then connections close. */
    async close(): Promise<void> {
      retention.stop();
      await gateway.drain();
      await gateway.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await provisioner.close();
      await queueRedis.quit().catch((err: unknown) => log.debug({ err }, "closing the queues' Redis connection failed"));
    },
  };
}
export type Api = ReturnType<typeof createApi>;
