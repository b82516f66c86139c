#!/usr/bin/env node
// ssh's ProxyCommand in native mode when socat is not installed: relays ssh's
// stdin/stdout to the session's Unix socket, behind which the worker holds the EC2
// Instance Connect tunnel (eic-bridge.ts). Plain node, no TypeScript loader.
//   node eic-proxy.mjs <socket>
import { connect } from "node:net";

const [path] = process.argv.slice(2);
if (!path) {
  process.stderr.write("usage: eic-proxy.mjs <socket>\r\n");
  process.exit(2);
}
const sock = connect({ path, allowHalfOpen: true });
sock.on("connect", () => {
  process.stdin.pipe(sock);
  sock.pipe(process.stdout);
});
sock.on("error", (err) => {
  process.stderr.write(`molecule-eic[handshake]: the worker's end of the tunnel is gone (${err.message})\r\n`);
  process.exit(1);
});
// The tunnel ended: ssh gets the last bytes, then EOF (as socat does).
sock.on("end", () => process.stdout.end(() => process.exit(0)));
sock.on("close", () => process.exit(0));
