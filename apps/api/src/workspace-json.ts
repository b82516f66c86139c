import type { schema, WorkspaceJson } from "@molecule/shared";

type Row = typeof schema.workspaces.$inferSelect;

export function toWorkspaceJson(w: Row): WorkspaceJson {
  return {
    id: w.id,
    name: w.name,
    runtime: w.runtime as WorkspaceJson["runtime"],
    tier: w.tier,
    status: w.status as WorkspaceJson["status"],
    provider: w.provider as WorkspaceJson["provider"],
    instance_id: w.instanceId,
    error: w.error,
    created_at: w.createdAt.toISOString(),
    updated_at: w.updatedAt.toISOString(),
    ready_at: w.readyAt?.toISOString() ?? null,
  };
}
