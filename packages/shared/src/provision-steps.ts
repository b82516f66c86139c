/**
 * The steps of a provisioning run, recorded as workspace events (`step`) so that a user
 * can watch them (the Canvas, `molecule ws create --wait`). Free of zod: browsers import it.
 */
export const PROVISION_STEPS = [
  "queued",
  "started",
  "creating_sandbox",
  "pulling_image",
  "starting_container",
  "launching_instance",
  "waiting_for_ssh",
  "ready",
  "failed",
] as const;
export type ProvisionStep = (typeof PROVISION_STEPS)[number];

/** What each step is called on screen. */
export const PROVISION_STEP_LABELS: Record<ProvisionStep, string> = {
  queued: "Queued",
  started: "Picked up by a worker",
  creating_sandbox: "Creating the sandbox",
  pulling_image: "Pulling the image",
  starting_container: "Starting the container",
  launching_instance: "Launching the instance",
  waiting_for_ssh: "Waiting for SSH",
  ready: "Ready",
  failed: "Failed",
};

export function isProvisionStep(s: unknown): s is ProvisionStep {
  return typeof s === "string" && (PROVISION_STEPS as readonly string[]).includes(s);
}
