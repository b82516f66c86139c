import { CONTAINER_NAME_RE, isUuid } from "@molecule/shared";

/** A workspace's container: on an AWS instance and on the docker provider (same naming as the local sandbox hostname). */
export function containerName(workspaceId: string): string {
  const name = `ws-${workspaceId.slice(0, 12)}`;
  if (!isUuid(workspaceId) || !CONTAINER_NAME_RE.test(name)) throw new Error(`invalid workspace id ${JSON.stringify(workspaceId)}`);
  return name;
}
