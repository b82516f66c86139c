import { z } from "zod";
import { UUID_RE } from "./ids.ts";
import { execCommand, TERM_RE } from "./protocol.ts";

export const PROVISION_QUEUE = "provision";
export const TERMINAL_QUEUE = "terminal";

/**
 * Seconds a BullMQ worker's blocking poll waits on an empty queue (its drainDelay; BullMQ's default
 * is 5). A new job wakes the poll at once through the queue's marker, so this only says how often an
 * idle worker wakes for nothing: every 5 s that was, with two queues, about a tenth of an idle
 * worker's CPU (docs/benchmark.md, issue 19).
 */
export const QUEUE_POLL_SECONDS = 20;

export const provisionAction = z.enum(["create", "restart", "destroy"]);
export type ProvisionAction = z.infer<typeof provisionAction>;

export const provisionJob = z.object({
  workspaceId: z.string().regex(UUID_RE),
  action: provisionAction,
});
export type ProvisionJob = z.infer<typeof provisionJob>;

/**
 * Job id = workspace id + action, so a retried request never provisions twice.
 * `generation` distinguishes successive restarts (each is a new request).
 */
export function provisionJobId(workspaceId: string, action: ProvisionAction, generation?: number): string {
  return generation === undefined ? `${workspaceId}-${action}` : `${workspaceId}-${action}-${generation}`;
}

export const terminalJob = z.object({
  sessionId: z.string().regex(UUID_RE),
  workspaceId: z.string().regex(UUID_RE),
  orgId: z.string().regex(UUID_RE),
  cols: z.number().int().min(1).max(1000),
  rows: z.number().int().min(1).max(1000),
  /** When the API gives up waiting for a claim; a worker that claims later must not start a shell. */
  claimDeadline: z.number().int(),
  /** Flow-control window: the worker pauses the PTY when this much output is unacknowledged. */
  windowBytes: z.number().int().min(1024),
  provider: z.enum(["local", "docker", "aws"]),
  instanceId: z.string().nullable(),
  /** An argv to run instead of the login shell (protocol `command`); absent: the shell. */
  command: execCommand.optional(),
  /** false: run `command` with pipes, not a PTY (stdout/stderr framed, docs/terminal-protocol.md). */
  pty: z.boolean().optional(),
  /** The client's TERM (protocol `term`); absent: xterm-256color. */
  term: z.string().regex(TERM_RE).optional(),
});
export type TerminalJob = z.infer<typeof terminalJob>;

/**
 * The terminal queue's other job: a session whose worker died (closed as worker_lost) may have left
 * its shell running where the worker's death does not reach it (a `docker exec` shell outlives the
 * CLI that started it). Any worker takes it and has the provider hang the session up.
 */
export const HANGUP_JOB = "hangup";
export const hangupJob = z.object({ sessionId: z.string().regex(UUID_RE) });
export type HangupJob = z.infer<typeof hangupJob>;
/** One hang-up per session, however many nodes judge its worker lost. */
export const hangupJobId = (sessionId: string) => `hangup-${sessionId}`;
/** What the terminal queue carries: sessions ("session") and hang-ups (HANGUP_JOB). */
export type TerminalQueueJob = TerminalJob | HangupJob;
