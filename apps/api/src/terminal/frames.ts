import type { WebSocket } from "ws";
import type { ErrorCode, ServerMessage } from "@molecule/shared";

/** v1: the JSON/binary protocol; raw: bytes both ways, for a plain terminal (docs/terminal.md). */
export type Mode = "v1" | "raw";

/** One options object for every output chunk: no allocation per chunk. */
const BINARY = { binary: true } as const;

/** What a raw client shows for an error: a line of text in its terminal. */
export function rawErrorFrame(message: string): string {
  return `Error: ${message}\r\n`;
}

/**
 * The one way an error reaches a client: a v1 `error` message, or for a raw client a line it
 * prints (a raw client's frames are all input, so bad_message, a reply to a malformed message, is v1's only).
 */
export function sendError(sock: WebSocket, mode: Mode, code: ErrorCode, message: string): void {
  if (sock.readyState !== sock.OPEN) return;
  if (mode === "v1") sock.send(JSON.stringify({ type: "error", code, message }));
  else if (code !== "bad_message" && code !== "read_only") sock.send(rawErrorFrame(message));
}

/** Writes one client's frames: output as binary frames, v1 messages as JSON text (raw clients get no messages). */
export class FrameWriter {
  constructor(
    private readonly sock: WebSocket,
    readonly mode: Mode,
  ) {}

  get open(): boolean {
    return this.sock.readyState === this.sock.OPEN;
  }

  message(m: ServerMessage): void {
    if (this.mode !== "v1" || !this.open) return;
    this.sock.send(JSON.stringify(m));
  }

  /** `sent` runs once the socket has taken the bytes (raw clients cannot ack, so this is their ack). */
  output(part: Buffer, sent?: () => void): void {
    this.sock.send(part, BINARY, sent);
  }

  error(code: ErrorCode, message: string): void {
    sendError(this.sock, this.mode, code, message);
  }
}
