/**
 * The timers and clock the gateway's periodic work runs on. Injected so tests drive the watchdog
 * and the sweeper round by round instead of sleeping; the defaults are the real ones.
 */
export interface Timers {
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
  /** Milliseconds since the epoch (Date.now). */
  now(): number;
}

export const realTimers: Timers = {
  setInterval: (fn, ms) => {
    const h = setInterval(fn, ms);
    // Periodic housekeeping never keeps the process alive on its own.
    h.unref();
    return h;
  },
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
  now: () => Date.now(),
};

/**
 * Runs `round` every `ms` once started, never two rounds at once (a slow round skips ticks
 * rather than piling up). `onError` decides what a failed round is worth saying.
 */
export function periodic(timers: Timers, ms: number, round: () => Promise<unknown>, onError: (err: unknown) => void) {
  let handle: unknown = null;
  let running = false;
  return {
    start(): void {
      if (handle !== null) return;
      handle = timers.setInterval(() => {
        if (running) return;
        running = true;
        void round()
          .catch(onError)
          .finally(() => {
            running = false;
          });
      }, ms);
    },
    stop(): void {
      if (handle === null) return;
      timers.clearInterval(handle);
      handle = null;
    },
  };
}
