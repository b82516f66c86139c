// A minimal Terminal client for the tutorials: `node docs/tutorials/terminal.mjs <API> <WORKSPACE_ID>`
// with ORG_TOKEN in the environment. It speaks molecule.terminal.v1 (docs/terminal-protocol.md):
// keyboard in, output out, resize on window changes, acks for flow control. Interactive on a
// terminal; with a pipe on stdin it sends the piped lines and exits with the shell's exit code.
// Run it from the repository root (it uses the repository's `ws` package).
import WebSocket from "ws";

const [api, ws] = process.argv.slice(2);
const token = process.env.ORG_TOKEN;
if (!api || !ws || !token) {
  process.stderr.write("usage: ORG_TOKEN=... node docs/tutorials/terminal.mjs <API base URL> <workspace id>\n");
  process.exit(2);
}
const tty = process.stdin.isTTY === true;
const size = () => ({ cols: process.stdout.columns || 80, rows: process.stdout.rows || 24 });
const url = new URL(`/workspaces/${ws}/terminal`, api.replace(/^http/, "ws"));
url.searchParams.set("cols", String(size().cols));
url.searchParams.set("rows", String(size().rows));
const sock = new WebSocket(url, ["molecule.terminal.v1"], { headers: { authorization: `Bearer ${token}` } });
let received = 0;
let exitCode = 1;
// Piped input waits for the shell's first output (its prompt), so nothing is typed ahead of it.
let pending = [];
if (!tty) {
  process.stdin.on("data", (b) => {
    const d = Buffer.from(b.toString().replace(/\n/g, "\r"));
    if (pending) pending.push(d);
    else sock.send(d, { binary: true });
  });
}

sock.on("unexpected-response", (_req, res) => {
  let body = "";
  res.on("data", (c) => (body += c));
  res.on("end", () => {
    process.stderr.write(`refused: HTTP ${res.statusCode} ${body}\n`);
    process.exit(1);
  });
});
sock.on("open", () => {
  if (tty) process.stdin.setRawMode(true);
  process.stdout.on("resize", () => sock.send(JSON.stringify({ type: "resize", ...size() })));
});
sock.on("message", (data, binary) => {
  if (binary) {
    received += data.length;
    process.stdout.write(data);
    if (pending) {
      for (const d of pending) sock.send(d, { binary: true });
      pending = null;
    }
    sock.send(JSON.stringify({ type: "ack", offset: received }));
    return;
  }
  const m = JSON.parse(data.toString());
  if (m.type === "hello") received = m.offset;
  else if (m.type === "exit") exitCode = m.code ?? 1;
  else if (m.type === "error") process.stderr.write(`\r\n[${m.code}] ${m.message}\r\n`);
});
sock.on("close", (code) => {
  if (tty) process.stdin.setRawMode(false);
  process.stderr.write(`\r\n[closed ${code}]\n`);
  process.exit(code === 1000 ? exitCode : 1);
});
if (tty) {
  pending = null;
  process.stdin.on("data", (b) => sock.readyState === WebSocket.OPEN && sock.send(b, { binary: true }));
}
