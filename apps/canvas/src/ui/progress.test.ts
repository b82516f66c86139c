import { describe, expect, it } from "vitest";
import { formatElapsed, latestRun, progressText, type WorkspaceEvent } from "./progress.ts";

let n = 0;
const ev = (step: WorkspaceEvent["step"], atMs: number, extra: Partial<WorkspaceEvent> = {}): WorkspaceEvent => ({
  id: ++n,
  type: step === "queued" || step === "ready" || step === "failed" ? "status" : "step",
  from: null,
  to: "provisioning",
  step,
  message: null,
  at: new Date(atMs).toISOString(),
  ...extra,
});

describe("provisioning progress", () => {
  it("shows the current step of the latest run and the time since it was queued", () => {
    const p = latestRun([ev("queued", 0), ev("started", 100), ev("launching_instance", 200)])!;
    expect(p.step).toBe("launching_instance");
    expect(progressText(p, 65_500)).toBe("Launching the instance… 1 min 05 s");
  });

  it("names the step a failed run failed in, with its message; a restart starts a new run", () => {
    const events = [
      ev("queued", 0),
      ev("started", 1),
      ev("pulling_image", 2),
      ev("failed", 3000, { message: "cannot pull the workspace image x" }),
    ];
    const failed = latestRun(events)!;
    expect(progressText(failed, 9999)).toBe("Failed while pulling the image: cannot pull the workspace image x");
    const again = latestRun([...events, ev("queued", 5000, { to: "restarting" }), ev("started", 5100)])!;
    expect(again.steps).toEqual(["queued", "started"]);
    expect(progressText(again, 7000)).toBe("Picked up by a worker… 2 s");
    expect(latestRun([])).toBeNull();
    expect(progressText(latestRun([ev("queued", 0), ev("ready", 4200)])!, 99_999)).toBe("Ready in 4 s");
    expect(formatElapsed(-5)).toBe("0 s");
  });
});
