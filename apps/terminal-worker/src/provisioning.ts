import { UnrecoverableError, Worker, type Job } from "bullmq";
import type { Redis } from "ioredis";
import { and, inArray, lt } from "drizzle-orm";
import {
  PROVISION_QUEUE,
  QUEUE_POLL_SECONDS,
  bullPrefix,
  getWorkspace,
  logged,
  provisionJob,
  schema,
  setInstanceId,
  transitionWorkspace,
  type Db,
  type Logger,
  type ProvisionJob,
} from "@molecule/shared";
import type { ProvisionStep } from "@molecule/shared/provision-steps";
import type { WorkerMetrics } from "./metrics.ts";
import { ProviderError, providerFor, type ProviderRegistry, type WorkspaceRow } from "./providers/index.ts";

export interface ProvisioningDeps {
  db: Db;
  redis: Redis;
  ns: string;
  log: Logger;
  providers: ProviderRegistry;
  concurrency: number;
  lockMs: number;
  timeoutMs: number;
  /** The wall clock (compared with updated_at), default Date.now. */
  now?: () => number;
  metrics?: Pick<WorkerMetrics, "provisioned" | "jobWait">;
}

/**
 * Runs `provision` jobs. Every step is idempotent and every status change is a
 * conditional transition, so a retried job, a crash mid-way or a delete racing a
 * create never leaves a half-made workspace or a wrong status.
 */
export function createProvisioningWorker(d: ProvisioningDeps) {
  async function recordInstance(id: string, instanceId: string) {
    await setInstanceId(d.db, id, instanceId);
  }

  /**
   * Provisioning steps as workspace events, written in order. A step that cannot be written is
   * logged, never fatal: progress notes must not fail a workspace. (queued, ready and failed are
   * the status events themselves.)
   */
  function stepRecorder(workspaceId: string, during: "provisioning" | "restarting", log: Logger) {
    let chain: Promise<void> = Promise.resolve();
    return {
      step(name: ProvisionStep, message: string | null = null): void {
        chain = chain
          .then(async () => {
            await d.db.insert(schema.workspaceEvents).values({ workspaceId, fromStatus: during, toStatus: during, step: name, message });
          })
          .catch((err: unknown) => log.warn({ err, step: name }, "could not record a provisioning step"));
      },
      flush: (): Promise<void> => chain,
    };
  }

  async function provision(workspace: WorkspaceRow, job: Job<ProvisionJob>, log: Logger): Promise<void> {
    const provider = providerFor(d.providers, workspace.provider);
    const during = workspace.status as "provisioning" | "restarting";
    const steps = stepRecorder(workspace.id, during, log);
    steps.step("started", job.attemptsMade > 0 ? `attempt ${job.attemptsMade + 1}` : null);
    const ctx = { recordInstanceId: (iid: string) => recordInstance(workspace.id, iid), requestId: job.id, step: (name: ProvisionStep) => steps.step(name) };
    const t0 = performance.now();
    const observe = (outcome: "ready" | "failed" | "retry" | "superseded") =>
      d.metrics?.provisioned(workspace.provider, job.data.action, outcome, performance.now() - t0);
    try {
      const res = job.data.action === "restart" && provider.restart ? await provider.restart(workspace, ctx) : await provider.create(workspace, ctx);
      // Every step is in before "ready": a watcher never sees a step after the end.
      await steps.flush();
      const ready = await transitionWorkspace(d.db, workspace.id, "ready", { from: [during], instanceId: res.instanceId ?? undefined });
      observe(ready ? "ready" : "superseded");
      if (!ready) {
        // Deleted (or timed out) while we were creating: undo what we made.
        const now = await getWorkspace(d.db, workspace.id);
        log.info({ status: now?.status }, "workspace changed during provisioning; cleaning up");
        if (now && (now.status === "removing" || now.status === "removed")) await provider.destroy(now);
        return;
      }
      log.info("workspace ready");
    } catch (err) {
      await steps.flush();
      const transient = err instanceof ProviderError ? err.transient : true;
      const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      if (transient && !last) {
        observe("retry");
        throw err;
      }
      observe("failed");
      const message = err instanceof ProviderError ? err.message : `provisioning failed: ${(err as Error).message}`;
      await transitionWorkspace(d.db, workspace.id, "failed", { from: [during], message });
      log.warn({ err }, "workspace failed");
      throw new UnrecoverableError(message);
    }
  }

  async function process(job: Job<ProvisionJob>): Promise<void> {
    const data = provisionJob.parse(job.data);
    const log = d.log.child({ workspace_id: data.workspaceId, action: data.action, job_id: job.id });
    d.metrics?.jobWait(PROVISION_QUEUE, (job.processedOn ?? Date.now()) - job.timestamp);
    const workspace = await getWorkspace(d.db, data.workspaceId);
    if (!workspace) return;
    if (data.action === "destroy") {
      if (workspace.status === "removed") return;
      await providerFor(d.providers, workspace.provider).destroy(workspace);
      await transitionWorkspace(d.db, workspace.id, "removed");
      log.info("workspace removed");
      return;
    }
    const expected = data.action === "create" ? "provisioning" : "restarting";
    if (workspace.status !== expected) {
      log.info({ status: workspace.status }, "nothing to do: workspace is no longer " + expected);
      return;
    }
    await provision(workspace, job, log);
  }

  const worker = new Worker<ProvisionJob>(PROVISION_QUEUE, process, {
    connection: d.redis,
    prefix: bullPrefix(d.ns),
    concurrency: d.concurrency,
    lockDuration: d.lockMs,
    stalledInterval: Math.max(1000, Math.floor(d.lockMs / 2)),
    // A job whose worker died is picked up again: every step above is idempotent.
    maxStalledCount: 5,
    drainDelay: QUEUE_POLL_SECONDS,
  });
  worker.on("failed", (job, err) => d.log.debug({ job_id: job?.id, err }, "provision job failed"));
  worker.on("error", (err) => d.log.warn({ err }, "provision worker error"));

  const clock = d.now ?? Date.now;
  /** Workspaces stuck provisioning past the timeout become failed with a message (any worker may run it). */
  async function sweepTimeouts(): Promise<number> {
    const cutoff = new Date(clock() - d.timeoutMs);
    const stuck = await d.db
      .select({ id: schema.workspaces.id })
      .from(schema.workspaces)
      .where(and(inArray(schema.workspaces.status, ["provisioning", "restarting"]), lt(schema.workspaces.updatedAt, cutoff)))
      .limit(100);
    let n = 0;
    for (const w of stuck) {
      const moved = await transitionWorkspace(d.db, w.id, "failed", {
        message: `provisioning did not finish within ${Math.round(d.timeoutMs / 1000)} s`,
      });
      if (moved) n++;
    }
    return n;
  }
  const sweeper = setInterval(() => void sweepTimeouts().catch(logged(d.log, "warn", "provisioning timeout sweep failed")), Math.min(10_000, d.timeoutMs / 2));
  sweeper.unref();

  return {
    worker,
    sweepTimeouts,
    async close(): Promise<void> {
      clearInterval(sweeper);
      await worker.close();
    },
  };
}
