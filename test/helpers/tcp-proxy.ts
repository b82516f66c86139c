import { createConnection, createServer, type Server, type Socket } from "node:net";

/**
 * A TCP forwarder on 127.0.0.1 to one loopback service, that a test can take
 * down (every connection dropped, new ones refused: nothing listens on the port)
 * and bring back on the same port. Stands in for "PostgreSQL is down" for one
 * client while the service itself stays up for everyone else.
 */
export async function startTcpProxy(targetPort: number, targetHost = "127.0.0.1") {
  const sockets = new Set<Socket>();
  let server: Server | null = null;
  let port = 0;

  async function listen(): Promise<void> {
    const s = createServer((client) => {
      const upstream = createConnection({ host: targetHost, port: targetPort });
      sockets.add(client);
      sockets.add(upstream);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        sockets.delete(client);
        sockets.delete(upstream);
      };
      client.on("error", drop).on("close", drop);
      upstream.on("error", drop).on("close", drop);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => resolve());
    });
    const addr = s.address();
    if (addr === null || typeof addr === "string") throw new Error("proxy has no TCP address");
    port = addr.port;
    server = s;
  }

  await listen();
  return {
    get port(): number {
      return port;
    },
    get up(): boolean {
      return server !== null;
    },
    /** Drops every connection and stops listening (connections are then refused). */
    async down(): Promise<void> {
      const s = server;
      server = null;
      for (const sock of sockets) sock.destroy();
      sockets.clear();
      if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    },
    /** Listens again on the same port. */
    async restore(): Promise<void> {
      if (!server) await listen();
    },
    close(): Promise<void> {
      return this.down();
    },
  };
}
export type TcpProxy = Awaited<ReturnType<typeof startTcpProxy>>;
