import { PROVISION_STEP_LABELS, type ProvisionStep } from "@molecule/shared/provision-steps";

export interface WorkspaceEvent {
  id: number;
  type: "status" | "step";
  from: string | null;
  to: string;
  step: ProvisionStep | null;
  message: string | null;
  at: string;
}

export interface RunProgress {
  /** The step the run is in now (or ended with: ready, failed). */
  step: ProvisionStep;
  label: string;
  /** When the run was queued (ms since the epoch). */
  since: number;
  /** When it ended (ready or failed), else null. */
  endedAt: number | null;
  /** For a failed run: the step it failed in, and why. */
  failedStep: ProvisionStep | null;
  message: string | null;
  /** The run's steps so far, in order. */
  steps: ProvisionStep[];
}

/** The latest provisioning run (from its "queued") as the Canvas shows it; null before any. */
export function latestRun(events: readonly WorkspaceEvent[]): RunProgress | null {
  let start = -1;
  for (let i = events.length - 1; i >= 0; i--) {
    if (events[i]!.step === "queued") {
      start = i;
      break;
    }
  }
  if (start < 0) return null;
  const run = events.slice(start).filter((e) => e.step !== null);
  const last = run[run.length - 1]!;
  const step = last.step!;
  const ended = step === "ready" || step === "failed";
  let failedStep: ProvisionStep | null = null;
  if (step === "failed") {
    const before = run.slice(0, -1).reverse().find((e) => e.step !== "queued" && e.step !== "started");
    failedStep = before?.step ?? null;
  }
  return {
    step,
    label: PROVISION_STEP_LABELS[step],
    since: Date.parse(run[0]!.at),
    endedAt: ended ? Date.parse(last.at) : null,
    failedStep,
    message: step === "failed" ? last.message : null,
    steps: run.map((e) => e.step!),
  };
}

/** 4 s, 1 min 05 s. */
export function formatElapsed(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
}

/** The line under a workspace's status: the current step and the time so far, or what failed. */
export function progressText(p: RunProgress, now: number): string {
  if (p.step === "failed") {
    const where = p.failedStep ? ` while ${PROVISION_STEP_LABELS[p.failedStep].toLowerCase()}` : "";
    return `Failed${where}${p.message ? `: ${p.message}` : ""}`;
  }
  if (p.step === "ready") return `Ready in ${formatElapsed((p.endedAt ?? now) - p.since)}`;
  return `${p.label}… ${formatElapsed(now - p.since)}`;
}
