import { resolveWorkspace } from "../api.ts";
import type { Context } from "../context.ts";
import { CliError, EXIT, usageError } from "../errors.ts";
import { FrameSplitter, STDIN_EOF, STREAM, stdinFrames } from "../terminal/pipe-frames.ts";
import { SessionClient } from "../terminal/session-client.ts";
import { reconnectSeconds, terminal } from "./ssh.ts";

export interface ExecFlags {
  tty?: boolean;
  noTty?: boolean;
  reconnectTimeout?: string;
}

/**
 * `molecule exec <ws> -- <command> [args…]`: one argv, run as it is. With a terminal on both
 * ends (or -t) in a PTY; otherwise (or -T) with pipes: stdin, stdout and stderr apart and
 * binary-safe. Our exit code is the command's.
 */
export async function exec(ctx: Context, ref: string, command: string[], flags: ExecFlags): Promise<number> {
  if (!command.length) throw usageError("molecule exec <workspace> -- <command> [args…]");
  if (flags.tty && flags.noTty) throw usageError("-t and -T contradict each other");
  const reconnectSec = reconnectSeconds(flags.reconnectTimeout);
  const usePty = flags.tty ? true : flags.noTty ? false : process.stdin.isTTY === true && process.stdout.isTTY === true;
  if (usePty) return terminal(ctx, ref, { escape: "none", reconnectSec, command });
  const code = await piped(ctx, ref, command, { reconnectSec, stdin: process.stdin, stdout: process.stdout, stderr: process.stderr });
  return code;
}

export interface PipeIo {
  reconnectSec: number;
  stdin: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Bytes of stdin sent and of stdout received so far (molecule cp's progress). */
  progress?: (sent: number, received: number) => void;
}

/** The command with pipes; resolves with its exit code. */
export async function piped(ctx: Context, ref: string, command: string[], io: PipeIo): Promise<number> {
  const target = ctx.target();
  const ws = await resolveWorkspace(ctx.client(), ref);
  if (ws.status !== "ready") throw new CliError(`workspace ${ws.name} is ${ws.status}, not ready`, EXIT.error, "not_ready");
  const splitter = new FrameSplitter();
  let sent = 0;
  let received = 0;
  const session = new SessionClient({
    api: target.api,
    token: target.token,
    workspaceId: ws.id,
    userAgent: ctx.userAgent,
    cols: 80,
    rows: 24,
    command,
    pty: false,
    // stdin is kept until the shell has it: a re-attach sends again what was in flight (an upload survives it).
    countInput: true,
    reconnectMs: io.reconnectSec * 1000,
    onOutput: (data, done) => {
      let waits = 1;
      const one = () => {
        if (--waits === 0) done();
      };
      splitter.push(data, (stream, payload) => {
        const out = stream === STREAM.stderr ? io.stderr : stream === STREAM.stdout ? io.stdout : null;
        if (!out || !payload.length) return;
        if (stream === STREAM.stdout) received += payload.length;
        waits++;
        out.write(payload, one);
      });
      io.progress?.(sent, received);
      one();
    },
    onNotice: (line) => process.stderr.write(`molecule: ${line}\n`),
    onReconnect: (state, why) => {
      if (state === "lost") process.stderr.write(`molecule: ${why}; reconnecting…`);
      else process.stderr.write(state === "restored" ? " ok\n" : " failed\n");
    },
  });
  await session.start();
  const offInterrupt = ctx.onInterrupt(() => {
    session.close();
    return session.ended;
  });
  // stdin → framed input, pausing while the socket is full; its end is an EOF frame.
  const pump = (async () => {
    for await (const chunk of io.stdin as AsyncIterable<Buffer>) {
      for (const f of stdinFrames(chunk)) {
        if (!session.input(f)) await session.writable();
      }
      sent += chunk.length;
      io.progress?.(sent, received);
    }
    session.input(STDIN_EOF);
  })();
  pump.catch((err: Error) => process.stderr.write(`molecule: reading stdin: ${err.message}\n`));
  const end = await session.ended;
  offInterrupt();
  if (end.kind === "exit") return end.code;
  if (end.kind === "error") throw end.error;
  return EXIT.ok;
}
