import type { IncomingMessage } from "node:http";

/** Loopback and private peers are our own load balancers; anyone else could forge X-Forwarded-For. */
const PROXY_PEER = /^(::ffff:)?(127\.|10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.)|^::1$|^f[cd][0-9a-f]{2}:/i;

/** The client's address for the audit row: the peer, or what our own proxy in front of us vouches for. */
export function clientAddress(req: Pick<IncomingMessage, "headers"> & { socket: { remoteAddress?: string | undefined } }): string | null {
  const peer = req.socket.remoteAddress ?? null;
  const xff = req.headers["x-forwarded-for"];
  if (!peer || typeof xff !== "string" || !PROXY_PEER.test(peer)) return peer;
  // The proxy appends the address it saw last: the right-most entry is the one it vouches for.
  const hops = xff.split(",").map((h) => h.trim()).filter(Boolean);
  return hops.at(-1)?.slice(0, 64) ?? peer;
}
