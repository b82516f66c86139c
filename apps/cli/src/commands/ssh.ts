import { resolveWorkspace } from "../api.ts";
import type { Context } from "../context.ts";
import { CliError, EXIT, usageError } from "../errors.ts";
import { ESCAPE_HELP, EscapeScanner } from "../terminal/escape.ts";
import { SessionClient } from "../terminal/session-client.ts";
import { enterRawMode } from "../terminal/tty.ts";

export interface SshFlags {
  escapeChar?: string;
  reconnectTimeout?: string;
}

export function reconnectSeconds(v: string | undefined): number {
  const s = v === undefined ? 60 : Number(v);
  if (!Number.isFinite(s) || s < 0 || s > 3600) throw usageError("--reconnect-timeout: seconds, 0..3600");
  return s;
}

/** `molecule ssh <workspace>`: the workspace's shell in this terminal; resolves with our exit code. */
export async function ssh(ctx: Context, ref: string, flags: SshFlags): Promise<number> {
  const escape = flags.escapeChar ?? "~";
  if (escape !== "none" && escape.length !== 1) throw usageError("-e takes one character or 'none'");
  return terminal(ctx, ref, { escape, reconnectSec: reconnectSeconds(flags.reconnectTimeout) });
}

/** A PTY session in this terminal: the login shell, or `command` (molecule exec -t). */
export async function terminal(ctx: Context, ref: string, o: { escape: string; reconnectSec: number; command?: string[] }): Promise<number> {
  const { escape, reconnectSec } = o;
  const target = ctx.target();
  const client = ctx.client();
  const ws = await resolveWorkspace(client, ref);
  if (ws.status !== "ready") throw new CliError(`workspace ${ws.name} is ${ws.status}, not ready`, EXIT.error, "not_ready");

  const { stdin, stdout, stderr } = process;
  const tty = stdin.isTTY === true;
  const size = () => ({ cols: stdout.columns || 80, rows: stdout.rows || 24 });
  // Notices go to stderr, on a line of their own, so a raw terminal shows them cleanly.
  const notice = (line: string) => stderr.write(`\r\n[molecule: ${line}]\r\n`);
  const session = new SessionClient({
    api: target.api,
    token: target.token,
    workspaceId: ws.id,
    userAgent: ctx.userAgent,
    ...size(),
    term: ctx.env.term,
    reconnectMs: reconnectSec * 1000,
    ...(o.command ? { command: o.command, pty: true } : {}),
    // Keystrokes in flight when the API node dies are sent again after the re-attach (the shell
    // drops what it already has); acks come at most once a second, so typing costs nothing more.
    countInput: true,
    onOutput: (data, done) => {
      stdout.write(data, () => done());
    },
    onNotice: notice,
    // One line: "[molecule: connection lost; reconnecting… ok]" once the session is back.
    onReconnect: (state, why) => {
      if (state === "lost") stderr.write(`\r\n[molecule: ${why}; reconnecting…`);
      else if (state === "restored") stderr.write(" ok]\r\n");
      else stderr.write(" failed]\r\n");
    },
  });
  await session.start();

  let signalled: number | null = null;
  const guard = enterRawMode(stdin, (_signal, code) => {
    signalled = code;
    session.close();
  });
  try {
    const scanner = escape === "none" || !tty ? null : new EscapeScanner(escape);
    let disconnected = false;
    const onData = (chunk: Buffer) => {
      if (!scanner) return session.input(chunk);
      for (const a of scanner.feed(chunk)) {
        if (a.kind === "send") session.input(a.bytes);
        else if (a.kind === "help") stderr.write(`\r\n${ESCAPE_HELP(escape)}\r\n`);
        else {
          disconnected = true;
          stderr.write("\r\n[molecule: disconnected]\r\n");
          session.close();
          return;
        }
      }
    };
    stdin.on("data", onData);
    // Piped input: its end is an EOF to the remote shell (Ctrl-D at the start of a line).
    const onEnd = () => {
      if (!tty) session.input(Buffer.from("\r\x04"));
    };
    stdin.on("end", onEnd);
    stdin.resume();
    const onResize = () => {
      const s = size();
      session.resize(s.cols, s.rows);
    };
    stdout.on("resize", onResize);
    process.on("SIGWINCH", onResize);
    const end = await session.ended;
    stdin.off("data", onData);
    stdin.off("end", onEnd);
    stdout.off("resize", onResize);
    process.off("SIGWINCH", onResize);
    stdin.pause();
    if (signalled !== null) return signalled;
    if (disconnected) return EXIT.interrupted;
    if (end.kind === "exit") return end.code;
    if (end.kind === "error") throw end.error;
    return EXIT.ok;
  } finally {
    guard.restore();
  }
}
