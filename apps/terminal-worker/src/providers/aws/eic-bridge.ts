import { createServer, type Server, type Socket } from "node:net";
import { rm } from "node:fs/promises";
import type WebSocket from "ws";
import { pipeTunnel, TunnelError } from "./eic-wire.mjs";

export interface TunnelBridge {
  /** The Unix socket ssh's ProxyCommand relay connects to (once). */
  socketPath: string;
  /** Why the tunnel ended, once it ended other than cleanly. */
  error(): TunnelError | null;
  close(): Promise<void>;
}

/**
 * The worker's end of a session's tunnel: the open WebSocket stays in this process,
 * and a 0700-directory Unix socket hands its bytes to ssh's ProxyCommand, a relay of
 * a few MB (socat, or eic-proxy.mjs when socat is missing) instead of a tunnel client
 * per session. One connection is accepted; nothing connecting within `acceptMs`
 * (ssh never started) closes the tunnel.
 */
export async function bridgeTunnel(ws: WebSocket, socketPath: string, o: { maxTunnelSec: number; openedAt: number; target: string; acceptMs: number }): Promise<TunnelBridge> {
  let err: TunnelError | null = null;
  let conn: Socket | null = null;
  const server: Server = createServer({ allowHalfOpen: true });
  const closeServer = () =>
    new Promise<void>((r) => {
      server.close(() => r());
    });
  server.maxConnections = 1;
  server.on("connection", (c) => {
    if (conn) {
      c.destroy();
      return;
    }
    conn = c;
    clearTimeout(acceptTimer);
    void closeServer();
    c.on("error", () => c.destroy());
    pipeTunnel(ws, c, c, { maxTunnelSec: o.maxTunnelSec, openedAt: o.openedAt, target: o.target }).then(
      () => c.end(),
      (e: unknown) => {
        err = e instanceof TunnelError ? e : new TunnelError("closed", (e as Error).message);
        c.destroy();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const acceptTimer = setTimeout(() => {
    if (conn) return;
    ws.terminate();
    void closeServer();
  }, o.acceptMs);
  return {
    socketPath,
    error: () => err,
    async close() {
      clearTimeout(acceptTimer);
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(1000);
      // The endpoint's connection slot is freed only when the WebSocket is gone.
      const t = setTimeout(() => ws.terminate(), 2000);
      t.unref();
      (conn as Socket | null)?.destroy();
      await closeServer();
      await rm(socketPath, { force: true });
    },
  };
}
