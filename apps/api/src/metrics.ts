import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** Prometheus metrics of one API node (GET /metrics). */
export function createMetrics(nodeId: string) {
  const registry = new Registry();
  registry.setDefaultLabels({ node: nodeId });
  collectDefaultMetrics({ register: registry });
  const active = new Gauge({ name: "molecule_terminal_sessions_active", help: "Terminal sockets attached to this node", registers: [registry] });
  const opened = new Histogram({
    name: "molecule_terminal_open_seconds",
    help: "WebSocket upgrade to hello",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [registry],
  });
  const closed = new Counter({ name: "molecule_terminal_sessions_closed_total", help: "Sockets closed, by reason", labelNames: ["reason"], registers: [registry] });
  const bytesOut = new Counter({ name: "molecule_terminal_bytes_out_total", help: "Output bytes sent to clients", registers: [registry] });
  const bytesIn = new Counter({ name: "molecule_terminal_bytes_in_total", help: "Input bytes from clients", registers: [registry] });
  const replayed = new Counter({ name: "molecule_terminal_replayed_bytes_total", help: "Output bytes filled from the replay log", registers: [registry] });
  const gaps = new Counter({ name: "molecule_terminal_gaps_total", help: "Gaps reported (output older than the replay window)", registers: [registry] });
  return {
    registry,
    terminal: {
      active: (n: number) => active.set(n),
      opened: (ms: number) => opened.observe(ms / 1000),
      closed: (reason: string) => closed.inc({ reason }),
      bytesOut: (n: number) => bytesOut.inc(n),
      bytesIn: (n: number) => bytesIn.inc(n),
      replay: (n: number) => replayed.inc(n),
      gap: () => gaps.inc(),
    },
  };
}
