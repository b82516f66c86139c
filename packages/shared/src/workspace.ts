import { z } from "zod";
import { PROVIDERS, RUNTIMES, STATUSES } from "./workspace-constants.ts";

export * from "./workspace-constants.ts";

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
