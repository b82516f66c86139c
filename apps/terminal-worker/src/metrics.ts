import { EVENT_LOOP_SAMPLE_MS } from "@molecule/shared/metrics-settings";
import type { IPty } from "node-pty";
import { createServer, type Server } from "node:http";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { SpawnPty } from "./terminal/types.ts";

export type QueueCounts = Record<string, Record<string, number>>;

/**
 * Prometheus metrics of one terminal-worker. Per-chunk paths only bump counters;
 * gauges (sessions held, queue depth) are read when Prometheus scrapes.
 */
export function createWorkerMetrics(workerId: string) {
  const registry = new Registry();
  registry.setDefaultLabels({ worker: workerId });
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  let activeFn: () => number = () => 0;
  let queueFn: (() => Promise<QueueCounts>) | null = null;
  new Gauge({
    name: "molecule_worker_sessions_active",
    help: "Shells this worker holds now",
    registers: [registry],
    collect() {
      this.set(activeFn());
    },
  });
  const opened = new Counter({ name: "molecule_worker_sessions_opened_total", help: "Shells started", registers: [registry] });
  const closed = new Counter({
    name: "molecule_worker_sessions_closed_total",
    help: "Sessions ended on this worker, by reason (exit, client_closed, idle_timeout, orphaned, not_ready, spawn_failed, ...)",
    labelNames: ["reason"],
    registers: [registry],
  });
  const bytesOut = new Counter({ name: "molecule_worker_pty_bytes_out_total", help: "Bytes the shells wrote (PTY output)", registers: [registry] });
  const bytesIn = new Counter({ name: "molecule_worker_pty_bytes_in_total", help: "Bytes written to the shells (client input)", registers: [registry] });
  const jobWait = new Histogram({
    name: "molecule_queue_job_wait_seconds",
    help: "Time a job waited in its queue before a worker took it (processedOn - timestamp)",
    labelNames: ["queue"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  new Gauge({
    name: "molecule_queue_jobs",
    help: "Jobs in each queue by state (BullMQ getJobCounts); every worker reports the same shared queues",
    labelNames: ["queue", "state"],
    registers: [registry],
    async collect() {
      if (!queueFn) return;
      const counts = await queueFn().catch(() => null);
      if (!counts) return;
      for (const [queue, byState] of Object.entries(counts)) {
        for (const [state, n] of Object.entries(byState)) this.set({ queue, state }, n);
      }
    },
  });
  const provision = new Histogram({
    name: "molecule_provisioning_duration_seconds",
    help: "Provider create/restart time, by provider, action and outcome (ready, failed, retry, superseded)",
    labelNames: ["provider", "action", "outcome"],
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 300],
    registers: [registry],
  });

  return {
    registry,
    /** Where the gauges read from (set once the runner and queues exist). */
    sources(s: { active?: () => number; queues?: () => Promise<QueueCounts> }): void {
      if (s.active) activeFn = s.active;
      if (s.queues) queueFn = s.queues;
    },
    session: {
      opened: () => opened.inc(),
      closed: (reason: string) => closed.inc({ reason }),
      bytesOut: (n: number) => bytesOut.inc(n),
      bytesIn: (n: number) => bytesIn.inc(n),
    },
    jobWait: (queue: string, ms: number) => jobWait.observe({ queue }, Math.max(0, ms) / 1000),
    provisioned: (provider: string, action: string, outcome: string, ms: number) => provision.observe({ provider, action, outcome }, ms / 1000),
  };
}
export type WorkerMetrics = ReturnType<typeof createWorkerMetrics>;

/** A tiny HTTP server for GET /metrics (the worker has no other HTTP surface). */
export function serveMetrics(registry: Registry, port: number, host: string): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "/").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "not_found", message: "only GET /metrics here", details: [] } }));
      return;
    }
    registry.metrics().then(
      (body) => {
        res.writeHead(200, { "content-type": registry.contentType });
        res.end(body);
      },
      (err: Error) => {
        res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { code: "internal", message: err.message, details: [] } }));
      },
    );
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}

/**
 * Wraps the PTY spawner so every shell's output and input bytes are counted: one
 * extra data listener and a counting write, nothing else on the per-chunk path.
 */
export function countPtyBytes(spawn: SpawnPty, counters: Pick<WorkerMetrics["session"], "bytesIn" | "bytesOut">): SpawnPty {
  return (file, args, opts) => countPty(spawn(file, args, opts), counters);
}

/**
 * Counts a PTY's bytes from now on; `skipOut` output bytes first are not the session's (a spare's
 * release-line echo, which the session drops too).
 */
export function countPty(pty: IPty, counters: Pick<WorkerMetrics["session"], "bytesIn" | "bytesOut">, skipOut = 0): IPty {
  let skip = skipOut;
  pty.onData((data) => {
    const n = (data as unknown as Buffer).length;
    const skipped = Math.min(skip, n);
    skip -= skipped;
    if (n > skipped) counters.bytesOut(n - skipped);
  });
  const write = pty.write.bind(pty);
  pty.write = (data: string | Buffer) => {
    counters.bytesIn(typeof data === "string" ? Buffer.byteLength(data) : data.length);
    write(data);
  };
  return pty;
}
