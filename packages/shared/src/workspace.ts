import { z } from "zod";
import { PROVIDERS, RUNTIMES, STATUSES } from "./workspace-constants.ts";

export * from "./workspace-constants.ts";

// A name is shown in lists, terminals and logs, so nothing in it may move, hide or break text:
// no controls (Cc), no format characters (Cf: bidi controls, zero-width, BOM, soft hyphen),
// no line/paragraph separators, no lone surrogates (Cs; a JSON "\ud800" parses to one).
// The joiners U+200C/U+200D are the exception: emoji sequences and Persian or Indic words need them.
const disallowed = /(?![\u200c\u200d])[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;
const printable = /^(?:(?![\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]).|[\u200c\u200d])+$/su;
const bidi = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;

/** Names the first character that makes a name unprintable, and why, for the 400's message. */
export function namePrintableProblem(name: string): string | null {
  const m = disallowed.exec(name);
  if (!m) return null;
  const ch = m[0];
  const cp = `U+${(ch.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0")}`;
  const at = `at position ${m.index}`;
  if (/\p{Cs}/u.test(ch)) return `name must not contain a lone surrogate (${cp} ${at}); send valid UTF-16 pairs`;
  if (/\p{Cc}/u.test(ch)) return `name must not contain control characters (${cp} ${at})`;
  if (/[\p{Zl}\p{Zp}]/u.test(ch)) return `name must not contain line or paragraph separators (${cp} ${at})`;
  if (bidi.test(ch)) return `name must not contain bidirectional control characters (${cp} ${at})`;
  return `name must not contain invisible format characters (${cp} ${at})`;
}

export const createWorkspaceBody = z
  .object({
    name: z
      .string()
      .min(1, "name must not be empty")
      .max(255, "name must be at most 255 characters")
      .regex(printable, {
        error: (iss) => (typeof iss.input === "string" && namePrintableProblem(iss.input)) || "name must contain printable characters only",
      }),
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
