/** The terminal WebSocket contract's constants and server messages, free of zod so browsers can import them cheaply. */
export const SUBPROTOCOL_V1 = "molecule.terminal.v1";

export type ServerMessage =
  /** `input_from` (additive to v1): only for a client that asked to count its input; the server counts it from there. */
  | { type: "hello"; session: string; offset: number; cols: number; rows: number; input_from?: number }
  | { type: "gap"; from: number; to: number }
  | { type: "exit"; code: number | null; signal: string | number | null }
  | { type: "error"; code: ErrorCode; message: string }
  | { type: "pong" }
  /** Additive to v1, only for a client that asked (`input_from`): input bytes the shell has received. */
  | { type: "input_ack"; offset: number }
  | ViewersMessage;

/** One attached client as presence shows it (additive to v1: docs/terminal-protocol.md, "Controller and viewers"). */
export interface PresenceEntry {
  /** The token's display prefix (or "ticket" holder's token prefix). */
  label: string | null;
  address: string | null;
  /** ISO time the client attached. */
  since: string;
}

/** Presence: sent to every client of a session whenever its viewers change (only once anyone watches). */
export interface ViewersMessage {
  type: "viewers";
  count: number;
  viewers: PresenceEntry[];
  controller: PresenceEntry | null;
}

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
  store_unavailable: 4504,
} as const;

/** read_only: a viewer's input or resize (not closing); session_closed: the controller closed the session (then 1000). */
export type ErrorCode = Exclude<keyof typeof CLOSE, "normal"> | "bad_message" | "read_only" | "session_closed";

