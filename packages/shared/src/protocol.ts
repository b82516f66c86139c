import { z } from "zod";

/** The terminal WebSocket contract (docs/terminal-protocol.md). Never change what v1 means. */
export * from "./protocol-constants.ts";

/** A TERM value (protocol `term`): a terminfo name, nothing a shell could read as more. */
export const TERM_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;

/**
 * An exec command (protocol `command`): an argv, run as it is (never through a shell on the
 * server). It rides in the URL, so it is bounded: 1..256 arguments, 8 KiB in all, no NUL byte.
 */
export const execCommand = z
  .array(z.string().max(8192).refine((s) => !s.includes("\0"), "an argument must not contain a NUL byte"))
  .min(1)
  .max(256)
  .refine((a) => (a[0] ?? "") !== "", "the program (first argument) must not be empty")
  .refine((a) => a.reduce((n, s) => n + Buffer.byteLength(s), 0) <= 8192, "the command is longer than 8 KiB");

const commandParam = z
  .string()
  .max(32768)
  .transform((s, ctx) => {
    try {
      return JSON.parse(s) as unknown;
    } catch {
      ctx.addIssue({ code: "custom", message: "command must be a JSON array of strings" });
      return z.NEVER;
    }
  })
  .pipe(execCommand);

export const terminalQueryObject = z
  .object({
    cols: z.coerce.number().int().min(1).max(1000).default(80),
    rows: z.coerce.number().int().min(1).max(1000).default(24),
    session: z.string().optional(),
    offset: z.coerce.number().int().min(0).optional(),
    ticket: z.string().max(200).optional(),
    /** Additive to v1: run this argv instead of the login shell (JSON array of strings). */
    command: commandParam.optional(),
    /** With `command`: 0 runs it with pipes (stdout/stderr framed), 1 (default) in a PTY. */
    pty: z.enum(["0", "1"]).transform((v) => v === "1").optional(),
    /** The client's TERM for the new session (default xterm-256color). */
    term: z.string().regex(TERM_RE).optional(),
    /** Additive to v1: `view` attaches to `session` as a read-only viewer; `control` (default) as today. */
    mode: z.enum(["control", "view"]).optional(),
    /**
     * Additive to v1: this connection's input starts at byte `input_from` of the session's input
     * (0 for a new session); the server drops what of it the shell already has and says how much
     * it has (`input_ack`), so a client can re-attach and send again what was in flight.
     */
    input_from: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  });
export const terminalQuery = terminalQueryObject
  .refine((q) => q.offset === undefined || q.session !== undefined, {
    message: "offset requires session",
    path: ["offset"],
  })
  .refine((q) => q.pty === undefined || q.command !== undefined, { message: "pty requires command", path: ["pty"] })
  .refine((q) => q.mode !== "view" || q.session !== undefined, { message: "mode=view requires session", path: ["mode"] })
  .refine((q) => q.input_from === undefined || q.mode !== "view", { message: "a viewer sends no input: input_from is the controller's", path: ["input_from"] })
  .refine((q) => q.input_from === undefined || q.session !== undefined || q.input_from === 0, { message: "a new session's input starts at 0", path: ["input_from"] })
  .refine((q) => q.session === undefined || (q.command === undefined && q.pty === undefined), {
    message: "a re-attach (session) takes no command: the session has its own",
    path: ["command"],
  });
export type TerminalQuery = z.infer<typeof terminalQuery>;

const size = z.number().int().min(1).max(1000);
export const clientMessage = z.discriminatedUnion("type", [
  z.object({ type: z.literal("resize"), cols: size, rows: size }),
  z.object({ type: z.literal("ack"), offset: z.number().int().min(0) }),
  z.object({ type: z.literal("ping") }),
]);
export type ClientMessage = z.infer<typeof clientMessage>;

