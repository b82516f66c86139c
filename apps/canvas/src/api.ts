import type { WorkspaceJson } from "@molecule/shared/workspace";
import type { WorkspaceEvent } from "./ui/progress.ts";

export type Workspace = WorkspaceJson;

export interface AuditSession {
  id: string;
  token_prefix: string | null;
  client_addr: string | null;
  user_agent: string | null;
  worker_id: string | null;
  provider: string;
  instance_id: string | null;
  os_user: string | null;
  opened_at: string;
  closed_at: string | null;
  duration_ms: number | null;
  close_reason: string | null;
  exit_code: number | null;
  exit_signal: string | null;
  bytes_in: number;
  bytes_out: number;
  /** The session's recording (asciicast v2), or null when there is none. */
  recording?: { bytes: number; truncated: boolean; complete: boolean } | null;
}

export interface FieldError {
  field: string | null;
  message: string;
}

/** An error answer of the API: `{"error": {"code", "message", "details"}}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: unknown,
  ) {
    super(message);
  }

  /** Per-field validation messages (400 `details: [{field, message}]`). */
  get fieldErrors(): FieldError[] {
    if (!Array.isArray(this.details)) return [];
    return this.details
      .filter((d): d is { field?: unknown; message?: unknown } => typeof d === "object" && d !== null)
      .map((d) => ({
        field: typeof d.field === "string" && d.field ? d.field : null,
        message: typeof d.message === "string" ? d.message : "invalid",
      }));
  }
}

/** REST calls with the org token; the token only ever travels in the Authorization header. */
export function createApiClient(token: string, base = "") {
  async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    let res: Response;
    try {
      res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
    } catch (err) {
      throw new ApiError(0, "network", `the API could not be reached (${(err as Error).message})`, null);
    }
    const text = await res.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      // not JSON (a proxy's error page)
    }
    if (!res.ok) {
      const e = (json as { error?: { code?: string; message?: string; details?: unknown } } | null)?.error;
      throw new ApiError(res.status, e?.code ?? "http_error", e?.message ?? `HTTP ${res.status}`, e?.details ?? null);
    }
    return json as T;
  }

  const ws = (id: string) => `/workspaces/${encodeURIComponent(id)}`;
  return {
    /**
     * The newest `max` workspaces, newest first, in pages of at most `pageSize` (the API's
     * limit is 200); `more`: older ones exist beyond them.
     */
    async listWorkspaces(max: number, pageSize = 200): Promise<{ workspaces: Workspace[]; more: boolean }> {
      const out: Workspace[] = [];
      let cursor: string | null = null;
      do {
        const limit = Math.min(pageSize, max - out.length);
        const page: { workspaces: Workspace[]; next_cursor: string | null } = await call(
          "GET",
          `/workspaces?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
        );
        out.push(...page.workspaces);
        cursor = page.next_cursor;
      } while (cursor && out.length < max);
      return { workspaces: out, more: cursor !== null };
    },
    createWorkspace: (body: { name: string; runtime: string; tier: unknown }) => call<Workspace>("POST", "/workspaces", body),
    deleteWorkspace: (id: string) => call<Workspace>("DELETE", ws(id)),
    restartWorkspace: (id: string) => call<Workspace>("POST", `${ws(id)}/restart`),
    terminalTicket: (id: string) => call<{ ticket: string; expires_at: string }>("POST", `${ws(id)}/terminal/tickets`).then((r) => r.ticket),
    /** A ticket that opens only a viewer (session=…&mode=view). */
    viewTicket: (id: string) => call<{ ticket: string; expires_at: string }>("POST", `${ws(id)}/terminal/tickets`, { mode: "view" }).then((r) => r.ticket),
    /** A session's recording, the .cast text (complete once the session has ended). */
    async recording(id: string, sessionId: string): Promise<string> {
      const res = await fetch(`${base}${ws(id)}/terminal/sessions/${encodeURIComponent(sessionId)}/recording`, {
        headers: { authorization: `Bearer ${token}` },
        cache: "no-store",
      });
      if (!res.ok) throw new ApiError(res.status, "recording", `could not load the recording (HTTP ${res.status})`, null);
      return res.text();
    },
    /** One page of the terminal audit, newest first; `cursor` from the previous page. */
    terminalSessions: (id: string, cursor: string | null = null, limit = 100) =>
      call<{ sessions: AuditSession[]; next_cursor: string | null }>(
        "GET",
        `${ws(id)}/terminal/sessions?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
      ),
    /** The workspace's events, oldest first (every page; a workspace has a few per provisioning run). */
    async workspaceEvents(id: string, maxPages = 20): Promise<WorkspaceEvent[]> {
      const out: WorkspaceEvent[] = [];
      let cursor: string | null = null;
      for (let i = 0; i < maxPages; i++) {
        const page: { events: WorkspaceEvent[]; next_cursor: string | null } = await call(
          "GET",
          `${ws(id)}/events?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
        );
        out.push(...page.events);
        cursor = page.next_cursor;
        if (!cursor) break;
      }
      return out;
    },
  };
}
export type ApiClient = ReturnType<typeof createApiClient>;
