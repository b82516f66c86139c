import { CLOSE } from "@molecule/shared/protocol-constants";

/** Where the EIC setup is explained (served by every API node under /docs). */
export const INFRA_DOC_PATH = "docs/infra/workspace-terminal.md";

export interface CloseMeaning {
  /** A short sentence the user reads in the terminal's status bar. */
  title: string;
  /** Re-attaching with session and offset may continue the same shell. */
  resumable: boolean;
  /** A doc the user needs to fix it. */
  link?: { href: string; text: string };
}

/** Close code → what it means for the user (docs/terminal-protocol.md, "Close codes"). */
export function describeClose(code: number): CloseMeaning {
  switch (code) {
    case CLOSE.normal:
      return { title: "The terminal session ended", resumable: false };
    case 1001:
      return { title: "The server went away", resumable: true };
    case 1006:
      return { title: "The connection was lost", resumable: true };
    case CLOSE.policy:
      return { title: "Closed by policy: a message was too large or input came too fast", resumable: false };
    case CLOSE.internal:
      return { title: "The server hit an unexpected error", resumable: false };
    case CLOSE.restarting:
      return { title: "The API node is restarting", resumable: true };
    case CLOSE.session_not_found:
      return { title: "Session not found: it ended or expired while disconnected", resumable: false };
    case CLOSE.idle_timeout:
      return { title: "Closed after the idle timeout: no input for too long", resumable: false };
    case CLOSE.not_ready:
      return { title: "The workspace is not ready (still provisioning, restarting, failed or removed)", resumable: false };
    case CLOSE.session_expired:
      return { title: "The maximum session length was reached", resumable: false };
    case CLOSE.worker_lost:
      return { title: "Worker lost: the terminal worker holding this shell stopped", resumable: false };
    case CLOSE.eic_wiring_incomplete:
      return {
        title: "EIC wiring incomplete: the EC2 Instance Connect endpoint or IAM policy is not set up",
        resumable: false,
        link: { href: `/${INFRA_DOC_PATH}`, text: "How to set up the workspace terminal" },
      };
    case CLOSE.no_capacity:
      return { title: "No capacity: no terminal worker was free to open the shell", resumable: false };
    case CLOSE.store_unavailable:
      return { title: "The session's data store became unreachable: the session has ended", resumable: false };
    default:
      return { title: `The connection closed (code ${code})`, resumable: false };
  }
}
