import { createConnection, createServer, type Server, type Socket } from "node:net";

/**
 * A TCP forwarder on 127.0.0.1 to one loopback service, that a test can take
 * down (every connection dropped, new ones refused: nothing listens on the port)
 * and bring back on the same port — "PostgreSQL is down" for one client while the
 * service stays up for everyone else —, cut (a network drop), or point at another
 * port (a load balancer moving to another API node).
 */
export async function startTcpProxy(initialPort: number, targetHost = "127.0.0.1") {
  let targetPort = initialPort;
  const sockets = new Set<Socket>();
  let server: Server | null = null;
  let port = 0;
  let bytesUp = 0;

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
      client.on("data", (b: Buffer) => (bytesUp += b.length));
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
    get url(): string {
      return `http://127.0.0.1:${port}`;
    },
    /** Bytes clients have sent through it so far (how far an upload got). */
    get bytesUp(): number {
      return bytesUp;
    },
    /** New connections go to this port; open ones stay where they are. */
    setTarget(p: number): void {
      targetPort = p;
    },
    /** Cuts every open connection without a close frame (a network drop); new ones still go through. */
    cut(): void {
      for (const sock of sockets) sock.destroy();
      sockets.clear();
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
