import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import {
  bullPrefix,
  provisionJobId,
  PROVISION_QUEUE,
  transitionWorkspace,
  UnavailableError,
  type Db,
  type ProvisionAction,
  type ProvisionJob,
} from "@molecule/shared";

/** Enqueues provisioning jobs; job ids derive from workspace id + action so a retried request never provisions twice. */
export function createProvisioner(redis: Redis, ns: string, db: Db) {
  const queue = new Queue<ProvisionJob>(PROVISION_QUEUE, { connection: redis, prefix: bullPrefix(ns) });
  return {
    queue,
    async enqueue(workspaceId: string, action: ProvisionAction, generation?: number): Promise<void> {
      try {
        await queue.add(
          action,
          { workspaceId, action },
          {
            jobId: provisionJobId(workspaceId, action, generation),
            attempts: 8,
            backoff: { type: "exponential", delay: 500 },
            removeOnComplete: { age: 3600, count: 1000 },
            removeOnFail: { age: 24 * 3600 },
          },
        );
      } catch (err) {
        // Without a job nothing would move the workspace on: fail it visibly instead.
        if (action !== "destroy") {
          await transitionWorkspace(db, workspaceId, "failed", { message: "could not queue provisioning: job queue unavailable" });
        }
        const unavailable = new UnavailableError("the job queue is unavailable; try again shortly");
        unavailable.cause = err;
        throw unavailable;
      }
    },
    close: () => queue.close(),
  };
}
export type Provisioner = ReturnType<typeof createProvisioner>;
