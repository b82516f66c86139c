import type { Proc } from "../../scripts/processes.ts";

/**
 * Resolves with the first pino line a child process logs that `match` accepts, from now on.
 * For a decision a process takes on its own timer (a watchdog round) that nothing outside
 * it can see: the test waits for the decision instead of sleeping past it. The process must
 * log at the line's level (tests run children at LOG_LEVEL=warn unless TEST_LOG_LEVEL says
 * otherwise).
 */
export function nextLog(p: Proc, match: (line: Record<string, unknown>) => boolean, ms = 15_000): Promise<Record<string, unknown>> {
  const stdout = p.child.stdout;
  if (!stdout) return Promise.reject(new Error(`${p.name}: stdout is not piped`));
  return new Promise((resolve, reject) => {
    // A plain data listener next to the launcher's reader (a second readline would pause the stream on close).
    let rest = "";
    const onData = (b: Buffer | string) => {
      const parts = (rest + b.toString()).split("\n");
      rest = parts.pop() ?? "";
      for (const text of parts) {
        if (!text.startsWith("{")) continue;
        let line: Record<string, unknown>;
        try {
          line = JSON.parse(text) as Record<string, unknown>;
        } catch {
          continue; // not a pino record
        }
        if (match(line)) return done(null, line);
      }
    };
    const done = (err: Error | null, line?: Record<string, unknown>) => {
      clearTimeout(timer);
      stdout.off("data", onData);
      if (err) reject(err);
      else resolve(line!);
    };
    const timer = setTimeout(() => done(new Error(`${p.name}: no matching log line within ${ms} ms`)), ms);
    stdout.on("data", onData);
  });
}
