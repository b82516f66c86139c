import type { Logger } from "./logger.ts";

export interface ShutdownOptions {
  log: Logger;
  /** What the process says it does on the way out (logged with the signal). */
  message: string;
  /** Past this the process exits 1 whatever is still running. */
  hardLimitMs: number;
  /** The service's own close (API: drain sockets; worker: drain sessions). */
  close(): Promise<void>;
  /** Connections closed after it, in parallel; a failure of one never keeps the others open. */
  connections: (() => Promise<unknown>)[];
  exit?: (code: number) => void;
}

/**
 * SIGTERM/SIGINT handling shared by every main: one shutdown however many signals arrive,
 * a hard limit, the service closed first and then its connections.
 */
export function handleShutdownSignals(o: ShutdownOptions): (signal: string) => Promise<void> {
  const exit = o.exit ?? ((code: number) => process.exit(code));
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    o.log.info({ signal }, o.message);
    const hard = setTimeout(() => exit(1), o.hardLimitMs);
    hard.unref();
    await o.close().catch((err: unknown) => o.log.error({ err }, "close failed"));
    const results = await Promise.allSettled(o.connections.map((c) => c()));
    for (const r of results) if (r.status === "rejected") o.log.warn({ err: r.reason }, "a connection did not close cleanly");
    exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  return stop;
}
