import WebSocket from "ws";
import { resolveWorkspace, type ApiClient } from "../api.ts";
import type { Context } from "../context.ts";
import { CliError, EXIT, usageError } from "../errors.ts";
import { SUBPROTOCOL_V1 } from "../terminal/session-client.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Pauses longer than this play as this long (asciinema's idle_time_limit). */
const IDLE_LIMIT_SEC = 2;

export interface RecordingFlags {
  workspace?: string;
  speed?: string;
  raw?: boolean;
}

/** The workspace a session belongs to: --workspace, or the org's workspaces searched (newest sessions first). */
async function workspaceOf(client: ApiClient, session: string, ref: string | undefined): Promise<string> {
  if (!UUID.test(session)) throw usageError("<session>: a session id (molecule sessions <workspace> lists them)");
  if (ref) return (await resolveWorkspace(client, ref)).id;
  for (const ws of await client.allWorkspaces()) {
    const page = await client.sessions(ws.id, 200);
    if (page.sessions.some((s) => s.id === session)) return ws.id;
  }
  throw new CliError(`no session ${session} among the recent sessions of the organisation's workspaces (try --workspace)`, EXIT.error, "not_found");
}

/** `molecule play <session>`: the recording replayed in this terminal with its timing (or --raw: the .cast on stdout). */
export async function play(ctx: Context, session: string, flags: RecordingFlags): Promise<number> {
  const speed = flags.speed === undefined ? 1 : Number(flags.speed);
  if (!Number.isFinite(speed) || speed <= 0 || speed > 100) throw usageError("--speed: a number above 0, at most 100");
  const target = ctx.target();
  const wsId = await workspaceOf(ctx.client(), session, flags.workspace);
  const res = await fetch(`${target.api}/workspaces/${wsId}/terminal/sessions/${session}/recording`, {
    headers: { authorization: `Bearer ${target.token}`, "user-agent": ctx.userAgent },
  });
  if (!res.ok || !res.body) {
    const body = (await res.json().catch(() => null)) as { error?: { code?: string; message?: string } } | null;
    throw new CliError(body?.error?.message ?? `HTTP ${res.status}`, EXIT.error, body?.error?.code ?? "http_error");
  }
  // Streamed line by line: a live session's recording is followed until it ends.
  const decoder = new TextDecoder();
  let buf = "";
  let first = true;
  let last = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let nl = buf.indexOf("\n");
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      nl = buf.indexOf("\n");
      if (flags.raw) {
        process.stdout.write(`${line}\n`);
        continue;
      }
      if (first) {
        first = false;
        continue; // the header
      }
      let e: unknown;
      try {
        e = JSON.parse(line);
      } catch {
        continue; // a line a crash cut short: the rest still plays
      }
      if (!Array.isArray(e) || typeof e[0] !== "number" || typeof e[2] !== "string") continue;
      const wait = Math.min(Math.max(0, e[0] - last), IDLE_LIMIT_SEC) / speed;
      last = Math.max(last, e[0]);
      if (wait > 0.001) await new Promise((r) => setTimeout(r, wait * 1000));
      if (e[1] === "o") process.stdout.write(e[2]);
      else if (e[1] === "m") process.stderr.write(`\r\n[molecule: ${e[2]}]\r\n`);
    }
  }
  return EXIT.ok;
}

/** `molecule watch <session>`: a live session, read-only (mode=view), in this terminal until it ends or Ctrl-C. */
export async function watch(ctx: Context, session: string, flags: RecordingFlags): Promise<number> {
  const target = ctx.target();
  const wsId = await workspaceOf(ctx.client(), session, flags.workspace);
  const url = new URL(`${target.api.replace(/^http/, "ws")}/workspaces/${wsId}/terminal`);
  url.searchParams.set("session", session);
  url.searchParams.set("mode", "view");
  const sock = new WebSocket(url, [SUBPROTOCOL_V1], { headers: { authorization: `Bearer ${target.token}`, "user-agent": ctx.userAgent }, perMessageDeflate: false });
  let received = 0;
  let watching = -1;
  let reason = "";
  return new Promise<number>((resolve) => {
    const stop = () => sock.close(1000);
    process.once("SIGINT", stop);
    sock.on("unexpected-response", (_req, res) => {
      reason = `the API refused: HTTP ${res.statusCode}`;
      res.resume();
    });
    sock.on("message", (data: Buffer, isBinary) => {
      if (isBinary) {
        received += data.length;
        // Acked once written: a terminal that does not keep up just falls behind (a gap), nobody waits.
        process.stdout.write(data, () => sock.readyState === WebSocket.OPEN && sock.send(JSON.stringify({ type: "ack", offset: received })));
        return;
      }
      let m: { type?: string; offset?: number; to?: number; count?: number; code?: string; message?: string };
      try {
        m = JSON.parse(data.toString()) as typeof m;
      } catch {
        return;
      }
      if (m.type === "hello") {
        received = m.offset ?? 0;
        process.stderr.write(`[molecule: watching ${session} read-only; Ctrl-C stops]\r\n`);
      } else if (m.type === "gap") {
        received = m.to ?? received;
        process.stderr.write("\r\n[molecule: some output was older than the replay window and is not shown]\r\n");
      } else if (m.type === "viewers" && m.count !== watching) {
        watching = m.count ?? 0;
      } else if (m.type === "error" && m.code !== "read_only") {
        reason = m.message ?? m.code ?? "";
      } else if (m.type === "exit") {
        reason = "the shell exited";
      }
    });
    sock.on("error", (err) => {
      reason ||= err.message;
    });
    sock.on("close", (code) => {
      process.off("SIGINT", stop);
      if (reason) process.stderr.write(`\r\n[molecule: ${reason}]\r\n`);
      resolve(code === 1000 || code === 1005 ? EXIT.ok : EXIT.error);
    });
  });
}
