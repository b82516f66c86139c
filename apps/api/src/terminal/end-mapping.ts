import { CLOSE, type ErrorCode, type SessionEnd } from "@molecule/shared";

export interface CloseSpec {
  /** Protocol error code sent before the close; null for a clean end. */
  error: ErrorCode | null;
  close: number;
  message: string;
}

const INFRA_DOC = "docs/infra/workspace-terminal.md";

/** How each way a session can end reaches the client (terminal-protocol.md, "Close codes"). */
export function closeFor(end: SessionEnd): CloseSpec {
  const m = end.message;
  switch (end.reason) {
    case "exit":
    case "client_closed":
      return { error: null, close: CLOSE.normal, message: "" };
    case "idle_timeout":
      return { error: "idle_timeout", close: CLOSE.idle_timeout, message: m ?? "session closed after no input for the idle timeout" };
    case "session_expired":
      return { error: "session_expired", close: CLOSE.session_expired, message: m ?? "maximum session length reached" };
    case "worker_shutdown":
      return { error: "worker_lost", close: CLOSE.worker_lost, message: m ?? "the terminal worker holding this shell is shutting down" };
    case "worker_lost":
      return { error: "worker_lost", close: CLOSE.worker_lost, message: m ?? "the terminal worker holding this shell stopped" };
    case "workspace_deleted":
      return { error: "not_ready", close: CLOSE.not_ready, message: m ?? "the workspace is being removed or restarted" };
    case "not_ready":
      return { error: "not_ready", close: CLOSE.not_ready, message: m ?? "the workspace is not ready" };
    case "no_capacity":
      return { error: "no_capacity", close: CLOSE.no_capacity, message: m ?? "no terminal worker claimed the session in time" };
    case "eic_wiring_incomplete":
      return {
        error: "eic_wiring_incomplete",
        close: CLOSE.eic_wiring_incomplete,
        message: m ?? `EIC wiring incomplete: see ${INFRA_DOC}`,
      };
    case "orphaned":
      return { error: "session_not_found", close: CLOSE.session_not_found, message: m ?? "the session ended after no viewer was attached" };
    case "store_unavailable":
      return { error: "store_unavailable", close: CLOSE.store_unavailable, message: m ?? "the Redis shard holding this session is unreachable; the session cannot continue" };
    case "spawn_failed":
      return { error: "internal", close: CLOSE.internal, message: m ?? "the shell could not be started" };
  }
}
