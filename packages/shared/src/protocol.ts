import { z } from "zod";

/** The terminal WebSocket contract (shared/docs/terminal-protocol.md). Never change what v1 means. */
export const SUBPROTOCOL_V1 = "molecule.terminal.v1";

export const terminalQueryObject = z
  .object({
    cols: z.coerce.number().int().min(1).max(1000).default(80),
    rows: z.coerce.number().int().min(1).max(1000).default(24),
    session: z.string().optional(),
    offset: z.coerce.number().int().min(0).optional(),
    ticket: z.string().max(200).optional(),
  });
export const terminalQuery = terminalQueryObject.refine((q) => q.offset === undefined || q.session !== undefined, {
    message: "offset requires session",
    path: ["offset"],
  });
export type TerminalQuery = z.infer<typeof terminalQuery>;

const size = z.number().int().min(1).max(1000);
export const clientMessage = z.discriminatedUnion("type", [
  z.object({ type: z.literal("resize"), cols: size, rows: size }),
  z.object({ type: z.literal("ack"), offset: z.number().int().min(0) }),
  z.object({ type: z.literal("ping") }),
]);
export type ClientMessage = z.infer<typeof clientMessage>;

export type ServerMessage =
  | { type: "hello"; session: string; offset: number; cols: number; rows: number }
  | { type: "gap"; from: number; to: number }
  | { type: "exit"; code: number | null; signal: string | number | null }
  | { type: "error"; code: ErrorCode; message: string }
  | { type: "pong" };

export const CLOSE = {
  normal: 1000,
  policy: 1008,
  internal: 1011,
  restarting: 1012,
  session_not_found: 4404,
  idle_timeout: 4408,
  not_ready: 4409,
  session_expired: 4410,
  worker_lost: 4500,
  eic_wiring_incomplete: 4502,
  no_capacity: 4503,
} as const;

export type ErrorCode = Exclude<keyof typeof CLOSE, "normal"> | "bad_message";

export const DEFAULT_WINDOW_BYTES = 512 * 1024;
