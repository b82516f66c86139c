import { EVENT_LOOP_SAMPLE_MS } from "@molecule/shared/metrics-settings";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** Prometheus metrics of one API node (GET /metrics). */
export function createMetrics(nodeId: string) {
  const registry = new Registry();
  registry.setDefaultLabels({ node: nodeId });
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  const active = new Gauge({ name: "molecule_terminal_sessions_active", help: "Terminal sockets attached to this node", registers: [registry] });
  const opened = new Histogram({
    name: "molecule_terminal_open_seconds",
    help: "WebSocket upgrade to hello (kind: new session or re-attach)",
    labelNames: ["kind"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const openedTotal = new Counter({
    name: "molecule_terminal_sessions_opened_total",
    help: "Sockets that got their hello, by kind (new, reattach)",
    labelNames: ["kind"],
    registers: [registry],
  });
  const closed = new Counter({
    name: "molecule_terminal_sessions_closed_total",
    help: "Sockets closed, by reason: the session's end reason (exit, idle_timeout, worker_lost, ...), client_closed, dropped (no close frame), restarting (node draining), or an early refusal (not_ready, session_not_found)",
    labelNames: ["reason"],
    registers: [registry],
  });
  const bytesOut = new Counter({ name: "molecule_terminal_bytes_out_total", help: "Output bytes sent to clients", registers: [registry] });
  const bytesIn = new Counter({ name: "molecule_terminal_bytes_in_total", help: "Input bytes from clients", registers: [registry] });
  const replayed = new Counter({ name: "molecule_terminal_replayed_bytes_total", help: "Output bytes filled from the replay log", registers: [registry] });
  const gaps = new Counter({ name: "molecule_terminal_gaps_total", help: "Gaps reported (output older than the replay window)", registers: [registry] });
  return {
    registry,
    terminal: {
      active: (n: number) => active.set(n),
      opened: (ms: number, kind: "new" | "reattach" = "new") => {
        opened.observe({ kind }, ms / 1000);
        openedTotal.inc({ kind });
      },
      closed: (reason: string) => closed.inc({ reason }),
      bytesOut: (n: number) => bytesOut.inc(n),
      bytesIn: (n: number) => bytesIn.inc(n),
      replay: (n: number) => replayed.inc(n),
      gap: () => gaps.inc(),
    },
  };
}
