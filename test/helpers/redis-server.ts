import { spawn, type ChildProcess } from "node:child_process";
import * as net from "node:net";

/** A redis-server of the test's own on a loopback port: nothing kept on disk. */
export function startRedisServer(port: number): ChildProcess {
  return spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning"], {
    stdio: "ignore",
  });
}

/** Something accepts TCP connections on 127.0.0.1:`port` (for waitFor). */
export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1", () => {
      s.end();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}
