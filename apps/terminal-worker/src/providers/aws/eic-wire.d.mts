import type WebSocket from "ws";

export declare const MAX_FRAME: number;
export declare const TAG: string;
export type TunnelErrorKind = "denied" | "credentials" | "unknown_endpoint" | "limit" | "unavailable" | "handshake" | "unreachable" | "error_frame" | "closed" | "max_duration";
export declare class TunnelError extends Error {
  constructor(kind: TunnelErrorKind, message: string, info?: { status?: number; code?: string; requestId?: string });
  readonly kind: TunnelErrorKind;
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly requestId: string | undefined;
}
export declare function handshakeError(status: number, body: string, requestId: string): TunnelError;
export declare function openTunnel(url: string, o?: { timeoutMs?: number }): Promise<WebSocket>;
export declare function pipeTunnel(
  ws: WebSocket,
  input: NodeJS.ReadableStream,
  output: NodeJS.WritableStream,
  o?: { maxTunnelSec?: number; openedAt?: number; target?: string },
): Promise<{ bytesIn: number; bytesOut: number }>;
