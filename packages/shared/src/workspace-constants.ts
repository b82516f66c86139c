/** Workspace names and lifecycle, free of zod so browsers can import them cheaply. */
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

/** Statuses from which `to` may be reached: used in conditional UPDATEs so a race can never make an illegal move. */
export function sourcesOf(to: WorkspaceStatus): WorkspaceStatus[] {
  return STATUSES.filter((s) => TRANSITIONS[s].includes(to));
}

