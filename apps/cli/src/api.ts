import { z } from "zod";
import { ApiError, CliError } from "./errors.ts";

export const workspaceSchema = z.looseObject({
  id: z.string(),
  name: z.string(),
  runtime: z.string(),
  tier: z.number(),
  status: z.string(),
  provider: z.string().nullable().optional(),
  instance_id: z.string().nullable().optional(),
  error: z.string().nullable().optional(),
  created_at: z.string(),
  updated_at: z.string().optional(),
  ready_at: z.string().nullable().optional(),
});
export type Workspace = z.infer<typeof workspaceSchema>;
const workspacePage = z.object({ workspaces: z.array(workspaceSchema), next_cursor: z.string().nullable().optional() });

export const eventSchema = z.looseObject({
  id: z.number().optional(),
  type: z.string().optional(),
  from: z.string().nullable().optional(),
  to: z.string(),
  step: z.string().nullable().optional(),
  message: z.string().nullable().optional(),
  at: z.string(),
});
export type WorkspaceEvent = z.infer<typeof eventSchema>;
const eventPage = z.object({ events: z.array(eventSchema), next_cursor: z.string().nullable().optional() });

export const sessionSchema = z.looseObject({
  id: z.string(),
  token_prefix: z.string().nullable().optional(),
  client_addr: z.string().nullable().optional(),
  user_agent: z.string().nullable().optional(),
  worker_id: z.string().nullable().optional(),
  opened_at: z.string(),
  closed_at: z.string().nullable().optional(),
  duration_ms: z.number().nullable().optional(),
  close_reason: z.string().nullable().optional(),
  exit_code: z.number().nullable().optional(),
  exit_signal: z.string().nullable().optional(),
  bytes_in: z.number().optional(),
  bytes_out: z.number().optional(),
  command: z.array(z.string()).nullable().optional(),
});
export type SessionRow = z.infer<typeof sessionSchema>;
const sessionPage = z.object({ sessions: z.array(sessionSchema), next_cursor: z.string().nullable().optional() });

const errorBody = z.object({ error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }) });

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface ApiTarget {
  api: string;
  token: string;
}

/** The REST API as the CLI uses it; every answer is validated before use. */
export class ApiClient {
  constructor(
    readonly target: ApiTarget,
    readonly userAgent: string,
  ) {}

  async request<T>(method: string, path: string, schema: z.ZodType<T>, body?: unknown, allow404 = false): Promise<T | null> {
    const url = new URL(path, this.target.api.endsWith("/") ? this.target.api : `${this.target.api}/`);
    const headers: Record<string, string> = { authorization: `Bearer ${this.target.token}`, "user-agent": this.userAgent, accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    let res: Response;
    try {
      res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new CliError(`cannot reach the API at ${this.target.api}: ${cause?.code ?? cause?.message ?? (err as Error).message}`, 1, "network");
    }
    const text = await res.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!res.ok) {
      if (allow404 && res.status === 404) return null;
      const e = errorBody.safeParse(json);
      if (e.success) {
        const hint = e.data.error.code === "unauthorized" ? " (log in again: molecule login)" : "";
        throw new ApiError(res.status, e.data.error.code, `${e.data.error.message}${hint}`, e.data.error.details ?? null);
      }
      throw new ApiError(res.status, `http_${res.status}`, `${method} ${url.pathname} answered ${res.status} ${res.statusText}`, null);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) throw new CliError(`unexpected answer from ${method} ${url.pathname}: ${parsed.error.issues[0]?.message ?? "invalid"}`, 1, "bad_response");
    return parsed.data;
  }

  async must<T>(method: string, path: string, schema: z.ZodType<T>, body?: unknown): Promise<T> {
    return (await this.request(method, path, schema, body)) as T;
  }

  listWorkspaces(limit: number, cursor?: string, status?: string) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (cursor) q.set("cursor", cursor);
    if (status) q.set("status", status);
    return this.must("GET", `workspaces?${q}`, workspacePage);
  }

  async allWorkspaces(status?: string): Promise<Workspace[]> {
    const out: Workspace[] = [];
    let cursor: string | undefined;
    // Bounded: 50 pages of 200 is more than any org here has.
    for (let i = 0; i < 50; i++) {
      const page = await this.listWorkspaces(200, cursor, status);
      out.push(...page.workspaces);
      if (!page.next_cursor) break;
      cursor = page.next_cursor;
    }
    return out;
  }

  getWorkspace(id: string) {
    return this.must("GET", `workspaces/${id}`, workspaceSchema);
  }

  createWorkspace(body: { name: string; runtime?: string; tier?: number }) {
    return this.must("POST", "workspaces", workspaceSchema, body);
  }

  restartWorkspace(id: string) {
    return this.must("POST", `workspaces/${id}/restart`, workspaceSchema);
  }

  removeWorkspace(id: string) {
    return this.must("DELETE", `workspaces/${id}`, workspaceSchema);
  }

  /** A page of events, or null when the API has no events route (older servers). */
  events(id: string, cursor?: string) {
    const q = new URLSearchParams({ limit: "500" });
    if (cursor) q.set("cursor", cursor);
    return this.request("GET", `workspaces/${id}/events?${q}`, eventPage, undefined, true);
  }

  sessions(id: string, limit: number, cursor?: string) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (cursor) q.set("cursor", cursor);
    return this.must("GET", `workspaces/${id}/terminal/sessions?${q}`, sessionPage);
  }
}

/** A workspace given by id or by name: names must match exactly one workspace that is not removed. */
export async function resolveWorkspace(client: ApiClient, ref: string): Promise<Workspace> {
  if (UUID.test(ref)) return client.getWorkspace(ref);
  const all = (await client.allWorkspaces()).filter((w) => w.name === ref);
  if (all.length === 0) throw new CliError(`no workspace named ${JSON.stringify(ref)} (molecule ws list shows them)`, 1, "not_found");
  if (all.length > 1) {
    const ids = all.map((w) => `${w.id} (${w.status})`).join(", ");
    throw new CliError(`${all.length} workspaces are named ${JSON.stringify(ref)}: ${ids}; use the id`, 1, "ambiguous");
  }
  return all[0] as Workspace;
}
