/**
 * The benchmark's reference floor: the smallest correct bridge of the same
 * stack, with no Redis, no queue, no database. One process: ws + node-pty, the
 * same shell command as the local provider (bubblewrap when usable), the same
 * v1 framing (hello, binary output and input, acks, resize, ping, exit) and the
 * same flow control (at most `windowBytes` unacknowledged; the PTY is paused
 * while the window is full), so the same benchmark client drives it.
 *
 * Run directly it listens on 127.0.0.1 (BENCH_PORT, default 0) and prints
 * `{"event":"listening","port":N}`.
 */
import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as pty from "node-pty";
import { WebSocketServer, type WebSocket } from "ws";
import { createLocalProvider } from "../apps/terminal-worker/src/providers/index.ts";
import { parseSize } from "../apps/terminal-worker/src/providers/local-settings.ts";
import { killTree } from "../apps/terminal-worker/src/terminal/kill-tree.ts";
import { SUBPROTOCOL_V1 } from "./client.ts";

export interface BareBridgeOptions {
  windowBytes?: number;
  bwrap?: "auto" | "on" | "off";
  /** The workspace's sandbox limits (the bench raises them: every session shares one workspace). */
  limits?: { pids?: number; memoryBytes?: number };
  shell?: string;
}

export interface BareBridge {
  server: Server;
  port: number;
  sessions(): number;
  close(): Promise<void>;
}

export async function startBareBridge(o: BareBridgeOptions = {}, port = 0): Promise<BareBridge> {
  const windowBytes = o.windowBytes ?? 512 * 1024;
  const root = mkdtempSync(join(tmpdir(), "molecule-bare-"));
  const provider = createLocalProvider({ root, bwrap: o.bwrap ?? "auto", shell: o.shell ?? "/bin/bash", ...(o.limits ? { limits: o.limits } : {}) });
  const workspaceId = randomUUID();
  await provider.create({ id: workspaceId } as never, { recordInstanceId: async () => {} });

  // /readyz: so the same haproxy configuration can front it (the load balancer's share of the echo).
  const server = createServer((req, res) => res.writeHead(req.url === "/readyz" ? 200 : 404).end());
  const wss = new WebSocketServer({
    server,
    perMessageDeflate: false,
    maxPayload: 1024 * 1024,
    handleProtocols: (p) => (p.has(SUBPROTOCOL_V1) ? SUBPROTOCOL_V1 : false),
  });
  const live = new Set<WebSocket>();

  wss.on("connection", (ws, req) => {
    void (async () => {
      const q = new URL(req.url ?? "/", "http://x").searchParams;
      const size = (v: string | null, d: number) => Math.min(1000, Math.max(1, Number(v) || d));
      const cols = size(q.get("cols"), 80);
      const rows = size(q.get("rows"), 24);
      const cmd = await provider.terminalCommand({ sessionId: randomUUID(), workspaceId, orgId: "bench", instanceId: null, cols, rows } as never);
      if (ws.readyState !== ws.OPEN) return;
      const term = pty.spawn(cmd.file, cmd.args, { name: "xterm-256color", cols, rows, cwd: cmd.cwd, env: cmd.env, encoding: null } as never);
      live.add(ws);
      let sent = 0;
      let acked = 0;
      let paused = false;
      // Output read while the window was full waits here (at most one PTY read: the PTY is paused).
      let held: Buffer[] = [];
      let exited: { code: number | null; signal: number | null } | null = null;

      const pump = () => {
        while (held.length && sent - acked < windowBytes) {
          const b = held[0]!;
          const room = windowBytes - (sent - acked);
          const part = b.length > room ? b.subarray(0, room) : b;
          if (part.length === b.length) held.shift();
          else held[0] = b.subarray(room);
          sent += part.length;
          ws.send(part, { binary: true });
        }
        if (held.length === 0 && exited) {
          ws.send(JSON.stringify({ type: "exit", code: exited.code, signal: exited.signal }));
          ws.close(1000);
        }
      };

      ws.send(JSON.stringify({ type: "hello", session: randomUUID(), offset: 0, cols, rows }));
      term.onData((d) => {
        const b = d as unknown as Buffer;
        if (held.length === 0 && sent - acked + b.length <= windowBytes) {
          sent += b.length;
          ws.send(b, { binary: true });
        } else {
          held.push(b);
          pump();
        }
        if (!paused && (held.length > 0 || sent - acked >= windowBytes)) {
          paused = true;
          term.pause();
        }
      });
      term.onExit(({ exitCode, signal }) => {
        exited = { code: exitCode, signal: signal || null };
        pump();
      });
      ws.on("message", (data: Buffer, isBinary) => {
        if (isBinary) {
          term.write(data as never);
          return;
        }
        let m: { type?: string; offset?: number; cols?: number; rows?: number };
        try {
          m = JSON.parse(data.toString("utf8"));
        } catch {
          ws.send(JSON.stringify({ type: "error", code: "bad_message", message: "text frames must be one JSON object" }));
          return;
        }
        if (m.type === "ack" && typeof m.offset === "number") {
          acked = Math.max(acked, Math.min(m.offset, sent));
          pump();
          if (paused && held.length === 0 && sent - acked < windowBytes) {
            paused = false;
            term.resume();
          }
        } else if (m.type === "resize" && m.cols && m.rows) {
          term.resize(size(String(m.cols), cols), size(String(m.rows), rows));
        } else if (m.type === "ping") {
          ws.send(JSON.stringify({ type: "pong" }));
        } else {
          ws.send(JSON.stringify({ type: "error", code: "bad_message", message: "unknown message type" }));
        }
      });
      ws.on("close", () => {
        live.delete(ws);
        held = [];
        if (!exited) void killTree(term.pid);
      });
    })().catch(() => ws.close(1011));
  });

  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const addr = server.address();
  return {
    server,
    port: typeof addr === "object" && addr ? addr.port : 0,
    sessions: () => live.size,
    async close() {
      for (const ws of live) ws.close(1001);
      wss.close();
      await new Promise((r) => server.close(r));
      rmSync(root, { recursive: true, force: true });
    },
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const bridge = await startBareBridge(
    {
      windowBytes: process.env.BENCH_WINDOW_BYTES ? Number(process.env.BENCH_WINDOW_BYTES) : undefined,
      bwrap: (process.env.MOLECULE_SANDBOX_BWRAP as BareBridgeOptions["bwrap"]) ?? "auto",
      limits: {
        ...(process.env.MOLECULE_SANDBOX_PIDS ? { pids: Number(process.env.MOLECULE_SANDBOX_PIDS) } : {}),
        ...(process.env.MOLECULE_SANDBOX_MEMORY ? { memoryBytes: parseSize(process.env.MOLECULE_SANDBOX_MEMORY) ?? undefined } : {}),
      },
      shell: process.env.MOLECULE_SHELL,
    },
    Number(process.env.BENCH_PORT ?? 0),
  );
  process.stdout.write(`${JSON.stringify({ event: "listening", port: bridge.port, pid: process.pid })}\n`);
  const stop = () => void bridge.close().finally(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
