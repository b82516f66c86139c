import { PROVISION_STEP_LABELS, isProvisionStep } from "@molecule/shared/provision-steps";
import { resolveWorkspace, type ApiClient, type Workspace, type WorkspaceEvent } from "../api.ts";
import type { Context } from "../context.ts";
import { CliError, EXIT, usageError } from "../errors.ts";
import { ago, printFields, printJson, printTable } from "../output.ts";

export const RUNTIMES = ["hermes", "langgraph", "claude-code", "crewai", "autogen", "deepagents", "gemini-cli", "openclaw"] as const;
const STATUSES = ["provisioning", "ready", "failed", "restarting", "removing", "removed"];

function printWorkspace(ctx: Context, w: Workspace): void {
  if (ctx.json) return printJson(w);
  printFields([
    ["id", w.id],
    ["name", w.name],
    ["status", w.status],
    ["runtime", w.runtime],
    ["tier", w.tier],
    ["provider", w.provider],
    ["instance", w.instance_id],
    ["error", w.error],
    ["created", w.created_at],
    ["ready", w.ready_at],
  ]);
}

export async function listWorkspaces(ctx: Context, flags: { status?: string; all?: boolean }): Promise<number> {
  if (flags.status && !STATUSES.includes(flags.status)) throw usageError(`--status: one of ${STATUSES.join(", ")}`);
  const all = await ctx.client().allWorkspaces(flags.status);
  if (ctx.json) printJson({ workspaces: all });
  else if (!all.length) process.stderr.write("No workspaces: molecule ws create <name>\n");
  else printTable(["ID", "NAME", "STATUS", "RUNTIME", "TIER", "CREATED"], all.map((w) => [w.id, w.name, w.status, w.runtime, w.tier, ago(w.created_at)]));
  return EXIT.ok;
}

export async function getWorkspace(ctx: Context, ref: string): Promise<number> {
  printWorkspace(ctx, await resolveWorkspace(ctx.client(), ref));
  return EXIT.ok;
}

export interface CreateFlags {
  runtime?: string;
  tier?: string;
  wait?: boolean;
  timeout?: string;
}

function parseTimeout(v: string | undefined): number {
  const s = v === undefined ? 600 : Number(v);
  if (!Number.isFinite(s) || s <= 0 || s > 86_400) throw usageError("--timeout: seconds, 1..86400");
  return s * 1000;
}

export async function createWorkspace(ctx: Context, name: string, flags: CreateFlags): Promise<number> {
  if (flags.runtime !== undefined && !(RUNTIMES as readonly string[]).includes(flags.runtime)) throw usageError(`--runtime: one of ${RUNTIMES.join(", ")}`);
  let tier: number | undefined;
  if (flags.tier !== undefined) {
    tier = Number(flags.tier);
    if (!Number.isInteger(tier) || tier < 1 || tier > 4) throw usageError("--tier: an integer 1..4");
  }
  const timeoutMs = parseTimeout(flags.timeout);
  const client = ctx.client();
  const w = await client.createWorkspace({ name, ...(flags.runtime ? { runtime: flags.runtime } : {}), ...(tier ? { tier } : {}) });
  if (!flags.wait) {
    printWorkspace(ctx, w);
    return EXIT.ok;
  }
  if (!ctx.json) process.stderr.write(`Created ${w.name} (${w.id})\n`);
  printWorkspace(ctx, await waitReady(ctx, client, w, timeoutMs));
  return EXIT.ok;
}

export async function restartWorkspace(ctx: Context, ref: string, flags: { wait?: boolean; timeout?: string }): Promise<number> {
  const timeoutMs = parseTimeout(flags.timeout);
  const client = ctx.client();
  const w = await client.restartWorkspace((await resolveWorkspace(client, ref)).id);
  printWorkspace(ctx, flags.wait ? await waitReady(ctx, client, w, timeoutMs) : w);
  return EXIT.ok;
}

export async function removeWorkspace(ctx: Context, refs: string[]): Promise<number> {
  const client = ctx.client();
  const out: Workspace[] = [];
  for (const ref of refs) {
    const w = await client.removeWorkspace((await resolveWorkspace(client, ref)).id);
    out.push(w);
    if (!ctx.json) process.stderr.write(`Removing ${w.name} (${w.id}): ${w.status}\n`);
  }
  if (ctx.json) printJson(refs.length === 1 ? out[0] : { workspaces: out });
  return EXIT.ok;
}

const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

function describe(e: WorkspaceEvent): string {
  const label = e.step && isProvisionStep(e.step) ? PROVISION_STEP_LABELS[e.step] : `${e.from ?? "-"} → ${e.to}`;
  return e.message ? `${label}: ${e.message}` : label;
}

/**
 * Polls until the workspace is ready, showing its status and the provisioning steps from
 * GET /workspaces/{id}/events (on a terminal: one line that moves; otherwise a line per step).
 * An API without the events route shows the status alone.
 */
export async function waitReady(ctx: Context, client: ApiClient, start: Workspace, timeoutMs: number): Promise<Workspace> {
  const t0 = performance.now();
  const tty = process.stderr.isTTY === true;
  const quiet = ctx.json && !tty;
  let cursor: string | undefined;
  let haveEvents = true;
  let current = start.status;
  let frame = 0;
  const seen = new Set<number | string>();
  const secs = () => `${((performance.now() - t0) / 1000).toFixed(1)}s`;
  const clear = () => tty && process.stderr.write("\r\x1b[K");
  const line = (s: string) => {
    if (quiet) return;
    clear();
    process.stderr.write(`${s}\n`);
  };
  const spin = () => {
    if (!tty) return;
    frame = (frame + 1) % SPINNER.length;
    process.stderr.write(`\r\x1b[K${SPINNER[frame]} ${current} ${secs()}`);
  };
  let w = start;
  for (let delay = 250; ; delay = Math.min(delay * 1.5, 1000)) {
    if (haveEvents) {
      // Every page of new events, oldest first.
      for (let i = 0; i < 20; i++) {
        const page = await client.events(w.id, cursor);
        if (page === null) {
          haveEvents = false;
          break;
        }
        for (const e of page.events) {
          const key = e.id ?? `${e.at}/${e.to}/${e.step}`;
          if (seen.has(key)) continue;
          seen.add(key);
          line(`  ${secs().padStart(6)}  ${describe(e)}`);
        }
        // The last page is read again next time (the seen set drops repeats); earlier ones are skipped.
        if (!page.next_cursor) break;
        cursor = page.next_cursor;
      }
    }
    if (w.status !== current) {
      current = w.status;
      if (!haveEvents) line(`  ${secs().padStart(6)}  ${current}`);
    }
    if (w.status === "ready") {
      clear();
      if (!quiet) process.stderr.write(`Ready in ${secs()}\n`);
      return w;
    }
    if (w.status === "failed") {
      clear();
      throw new CliError(`workspace ${w.name} failed: ${w.error ?? "no message"}`, EXIT.error, "workspace_failed", { id: w.id });
    }
    if (w.status === "removing" || w.status === "removed") {
      clear();
      throw new CliError(`workspace ${w.name} is ${w.status}`, EXIT.error, "workspace_removed", { id: w.id });
    }
    if (performance.now() - t0 > timeoutMs) {
      clear();
      throw new CliError(`workspace ${w.name} is still ${w.status} after ${Math.round(timeoutMs / 1000)} s (molecule ws get ${w.id})`, EXIT.error, "timeout", { id: w.id });
    }
    spin();
    await new Promise((r) => setTimeout(r, delay));
    w = await client.getWorkspace(w.id);
  }
}
