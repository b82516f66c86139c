import { z } from "zod";

/** The terminal WebSocket contract (docs/terminal-protocol.md). Never change what v1 means. */
export * from "./protocol-constants.ts";

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

