import { z } from "zod";
import type { schema } from "@molecule/shared";

export const auditJson = z.object({
  id: z.string(),
  workspace_id: z.string(),
  token_id: z.string().nullable(),
  token_prefix: z.string().nullable(),
  client_addr: z.string().nullable(),
  user_agent: z.string().nullable(),
  worker_id: z.string().nullable(),
  provider: z.string(),
  instance_id: z.string().nullable(),
  os_user: z.string().nullable(),
  /** The argv of an exec session; null for a login shell. */
  command: z.array(z.string()).nullable(),
  /** false: an exec session run with pipes, not a PTY. */
  pty: z.boolean(),
  opened_at: z.string(),
  closed_at: z.string().nullable(),
  duration_ms: z.number().nullable(),
  close_reason: z.string().nullable(),
  exit_code: z.number().nullable(),
  exit_signal: z.string().nullable(),
  bytes_in: z.number(),
  bytes_out: z.number(),
  /** The session's recording (GET …/sessions/{sid}/recording); null when it was not recorded or was deleted. */
  recording: z
    .object({
      bytes: z.number(),
      truncated: z.boolean(),
      /** false while the session is live (the file still grows). */
      complete: z.boolean(),
    })
    .nullable(),
});

export function toAuditJson(s: typeof schema.terminalSessions.$inferSelect): z.infer<typeof auditJson> {
  return {
    id: s.id,
    workspace_id: s.workspaceId,
    token_id: s.tokenId,
    token_prefix: s.tokenPrefix,
    client_addr: s.clientAddr,
    user_agent: s.userAgent,
    worker_id: s.workerId,
    provider: s.provider,
    instance_id: s.instanceId,
    os_user: s.osUser,
    command: s.command ?? null,
    pty: s.pty,
    opened_at: s.openedAt.toISOString(),
    closed_at: s.closedAt?.toISOString() ?? null,
    duration_ms: s.closedAt ? s.closedAt.getTime() - s.openedAt.getTime() : null,
    close_reason: s.closeReason,
    exit_code: s.exitCode,
    exit_signal: s.exitSignal,
    bytes_in: s.bytesIn,
    bytes_out: s.bytesOut,
    recording: s.recordingKey ? { bytes: s.recordingBytes ?? 0, truncated: s.recordingTruncated, complete: s.recordingEndedAt !== null } : null,
  };
}
