import { createConnection, createServer, type Socket } from "node:net";

/**
 * A TCP forwarder on 127.0.0.1 whose upstream a test switches: the CLI's --api URL stays the
 * same while the API node behind it is killed and another takes over (as a load balancer does).
 */
export async function startSwitchProxy(targetPort: number) {
  let target = targetPort;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = createConnection({ host: "127.0.0.1", port: target });
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
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const addr = server.address();
  if (addr === null || typeof addr === "string") throw new Error("proxy has no TCP address");
  return {
    url: `http://127.0.0.1:${addr.port}`,
    /** New connections go to this port; open ones stay where they are. */
    setTarget(port: number): void {
      target = port;
    },
    /** Cuts every open connection without a close frame (a network drop). */
    cut(): void {
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    close(): Promise<void> {
      this.cut();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
