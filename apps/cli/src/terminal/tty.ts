import { spawnSync } from "node:child_process";

/**
 * The local terminal's raw mode, restored on every way out: a normal end, an error, a signal
 * (SIGTERM, SIGHUP, SIGQUIT) and an uncaught exception. setRawMode is a synchronous ioctl, so
 * it works from the `exit` handler too. Only SIGKILL cannot be caught; `stty sane` fixes that.
 */
export interface RawGuard {
  restore(): void;
}

const SIGNALS: Record<string, number> = { SIGTERM: 15, SIGHUP: 1, SIGQUIT: 3 };

export function enterRawMode(stdin: NodeJS.ReadStream, onSignal: (signal: NodeJS.Signals, code: number) => void): RawGuard {
  const isTty = stdin.isTTY === true;
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    if (isTty) stdin.setRawMode(false);
    process.off("exit", restore);
    for (const [s, f] of handlers) process.off(s, f);
    process.off("uncaughtException", crash);
  };
  const handlers = Object.entries(SIGNALS).map(([s, n]) => {
    const f = () => {
      restore();
      onSignal(s as NodeJS.Signals, 128 + n);
    };
    process.on(s, f);
    return [s, f] as const;
  });
  const crash = (err: Error) => {
    restore();
    process.stderr.write(`\r\nmolecule: internal error: ${err.stack ?? err.message}\n`);
    process.exit(1);
  };
  process.on("uncaughtException", crash);
  process.on("exit", restore);
  if (isTty) {
    stdin.setRawMode(true);
    // libuv's raw mode keeps output post-processing (ONLCR): the remote's \r\n would arrive as
    // \r\r\n. ssh clears it (cfmakeraw); so do we. setRawMode(false) restores the saved termios.
    const r = spawnSync("stty", ["-opost"], { stdio: ["inherit", "ignore", "ignore"], timeout: 2000 });
    if (r.status !== 0) process.stderr.write("molecule: could not turn off output processing (stty -opost); line ends may show doubled\r\n");
  }
  return { restore };
}
