import type { ProviderName, schema } from "@molecule/shared";
import type { ProvisionStep } from "@molecule/shared/provision-steps";

export type WorkspaceRow = typeof schema.workspaces.$inferSelect;

/** What a PTY runs: always an argv array, never a shell string with user data in it. */
export interface ShellCommand {
  file: string;
  args: string[];
  env: Record<string, string>;
  cwd?: string;
  /** Audit fields known only to the provider (instance, OS user). */
  audit?: { instanceId?: string | null; osUser?: string | null };
  /** Runs after the shell is gone (e.g. delete an ephemeral key). */
  cleanup?: () => Promise<void>;
  /**
   * Explains an exit that means "the connection never came up" (e.g. ssh 255 with
   * an EIC error on stderr) as a protocol error instead of a plain exit. Called with
   * the exit code, the last output bytes and how long the command ran.
   */
  diagnoseExit?: (exit: { code: number; signal: number | null; tail: Buffer; ranMs: number }) => TerminalDiagnosis | null;
  /** The same shell can come from a spare started earlier (terminal/spare-shells.ts). */
  spare?: SpareSpec;
}

/**
 * A spare: `template` started ahead of time runs the whole sandbox chain, then waits at a gate
 * inside the sandbox where the shell would start, and prints SPARE_READY; writing `release` to
 * its PTY makes it exec this session's shell. Every session that shares the template shares `key`.
 */
export interface SpareSpec {
  key: string;
  template: { file: string; args: string[]; env: Record<string, string>; cwd?: string };
  release: string;
}

export interface TerminalContext {
  sessionId: string;
  workspaceId: string;
  orgId: string;
  instanceId: string | null;
  cols: number;
  rows: number;
  /** An argv to run instead of the login shell (validated: protocol.ts execCommand); never a shell string. */
  command?: string[];
  /** With `command`: false runs it with pipes (no PTY; no -t for docker/ssh). */
  pty?: boolean;
  /** The client's TERM (validated: TERM_RE); default xterm-256color. */
  term?: string;
}

export interface ProvisionContext {
  /** Persist the instance id the moment the provider has one, so a crash can still find it. */
  recordInstanceId(id: string): Promise<void>;
  /**
   * Identifies this provisioning request across its retries (the job id): a provider
   * can tag what it launches with it and adopt it after a crash instead of launching twice.
   */
  requestId?: string;
  /**
   * Records that provisioning entered a step (a workspace event the user watches). Never
   * throws and need not be awaited: a lost progress note must not fail the provisioning.
   */
  step?(name: ProvisionStep): void;
}

export interface Provider {
  readonly name: ProviderName;
  create(workspace: WorkspaceRow, ctx: ProvisionContext): Promise<{ instanceId?: string | null }>;
  /** Re-provision (e.g. replace the instance); without it, restart re-runs the idempotent create. */
  restart?(workspace: WorkspaceRow, ctx: ProvisionContext): Promise<{ instanceId?: string | null }>;
  destroy(workspace: WorkspaceRow): Promise<void>;
  terminalCommand(ctx: TerminalContext): Promise<ShellCommand>;
  /**
   * terminalCommand has no effect that needs a claimed session (it pushes no key and starts
   * nothing; at most idempotent preparation): the runner calls it while it claims the session.
   */
  readonly commandBeforeClaim?: boolean;
  /**
   * Ends what a session started that a worker's death does not end (a `docker exec` shell outlives
   * the CLI): run by any worker for a session closed as worker_lost. Absent: nothing outlives it.
   */
  hangup?(workspaceId: string, sessionId: string): Promise<void>;
}

export interface TerminalDiagnosis {
  reason: "eic_wiring_incomplete" | "not_ready" | "no_capacity" | "session_expired";
  message: string;
}

/** A provider failure. Transient ones are retried with backoff; permanent ones fail the workspace with `message`. */
export class ProviderError extends Error {
  constructor(
    message: string,
    readonly transient: boolean,
    readonly code = "provider_error",
  ) {
    super(message);
    this.name = "ProviderError";
  }
}

/** The terminal cannot open for a reason the user can act on (maps to a protocol close code). */
export class TerminalUnavailableError extends Error {
  constructor(
    readonly reason: "eic_wiring_incomplete" | "not_ready" | "no_capacity",
    message: string,
  ) {
    super(message);
    this.name = "TerminalUnavailableError";
  }
}
