#!/usr/bin/env node
// ssh's ProxyCommand in native mode (MOLECULE_AWS_TUNNEL=native): opens the EC2
// Instance Connect tunnel at the presigned URL the worker wrote for this session and
// pipes ssh's stdin/stdout through it. The worker did the AWS calls and the signing;
// this process only moves bytes, with plain node (no TypeScript loader).
//   node eic-proxy.mjs <url-file> <max-tunnel-sec> <target>
// The URL file (0600, in the session's 0700 key directory) is deleted once read: the
// URL is a bearer credential for its 60 s. Failures: one `molecule-eic[<kind>]: …`
// line on stderr (ssh passes it to the terminal; ssh-command.ts explains it), exit 1.
import { readFileSync, rmSync } from "node:fs";
import { openTunnel, pipeTunnel, TAG } from "./eic-wire.mjs";

const [urlFile, maxArg, target] = process.argv.slice(2);
const say = (kind, message) => process.stderr.write(`${TAG}[${kind}]: ${message}\r\n`);
if (!urlFile) {
  say("usage", "usage: eic-proxy.mjs <url-file> <max-tunnel-sec> <target>");
  process.exit(2);
}
let url;
try {
  url = readFileSync(urlFile, "utf8").trim();
  rmSync(urlFile, { force: true });
} catch (err) {
  say("handshake", `cannot read the tunnel URL: ${err.message}`);
  process.exit(1);
}
const maxTunnelSec = Number(maxArg) || undefined;
try {
  const openedAt = Date.now();
  const ws = await openTunnel(url);
  await pipeTunnel(ws, process.stdin, process.stdout, { maxTunnelSec, openedAt, target });
  process.exit(0);
} catch (err) {
  say(err.kind ?? "handshake", err.message);
  process.exit(1);
}
