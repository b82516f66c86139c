import { z } from "zod";

export const RUNTIMES = [
  "hermes",
  "langgraph",
  "claude-code",
  "crewai",
  "autogen",
  "deepagents",
  "gemini-cli",
  "openclaw",
] as const;
export type Runtime = (typeof RUNTIMES)[number];

export const STATUSES = [
  "provisioning",
  "ready",
  "failed",
  "restarting",
  "removing",
  "removed",
] as const;
export type WorkspaceStatus = (typeof STATUSES)[number];

export const PROVIDERS = ["local", "docker", "aws"] as const;
export type ProviderName = (typeof PROVIDERS)[number];

/** The lifecycle: provisioning -> ready|failed, ready|failed -> restarting -> ready|failed, any -> removing -> removed. */
const TRANSITIONS: Record<WorkspaceStatus, readonly WorkspaceStatus[]> = {
  provisioning: ["ready", "failed", "removing"],
  ready: ["restarting", "removing"],
  failed: ["restarting", "removing"],
  restarting: ["ready", "failed", "removing"],
  removing: ["removed"],
  removed: [],
};

export function canTransition(from: WorkspaceStatus, to: WorkspaceStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Statuses from which `to` may be reached: used in conditional UPDATEs so a race can never make an illegal move. */
export function sourcesOf(to: WorkspaceStatus): WorkspaceStatus[] {
  return STATUSES.filter((s) => TRANSITIONS[s].includes(to));
}

// Printable characters only: no control characters (C0, DEL, C1).
const printable = /^[^\u0000-\u001f\u007f-\u009f]+$/u;

export const createWorkspaceBody = z
  .object({
    name: z
      .string()
      .min(1, "name must not be empty")
      .max(255, "name must be at most 255 characters")
      .regex(printable, "name must contain printable characters only"),
    runtime: z.enum(RUNTIMES).default("langgraph"),
    tier: z.number().int().min(1).max(4).default(2),
  })
  .strict();
export type CreateWorkspaceBody = z.infer<typeof createWorkspaceBody>;

export const workspaceJson = z.object({
  id: z.uuid(),
  name: z.string(),
  runtime: z.enum(RUNTIMES),
  tier: z.number().int(),
  status: z.enum(STATUSES),
  provider: z.enum(PROVIDERS),
  instance_id: z.string().nullable(),
  error: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
  ready_at: z.string().nullable(),
});
export type WorkspaceJson = z.infer<typeof workspaceJson>;
