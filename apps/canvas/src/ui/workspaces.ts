import { RUNTIMES, type WorkspaceStatus } from "@molecule/shared/workspace-constants";
import { ApiError, type ApiClient, type Workspace } from "../api.ts";
import { h, setText } from "../dom.ts";
import { announce } from "./announce.ts";
import { confirmDialog } from "./confirm.ts";
import { latestRun, progressText, type RunProgress } from "./progress.ts";

const TRANSITIONAL: readonly WorkspaceStatus[] = ["provisioning", "restarting", "removing"];
const POLL_FAST_MS = 1000;
const POLL_SLOW_MS = 4000;
/** Workspaces listed at first, and added by each "Show more". */
const PAGE = 200;

export interface WorkspacesDeps {
  api: ApiClient;
  openTerminal(ws: Workspace): void;
  openSessions(ws: Workspace): void;
  /** The token stopped working (401): back to sign-in. */
  unauthorized(message: string): void;
}

interface Row {
  tr: HTMLTableRowElement;
  status: HTMLElement;
  error: HTMLElement;
  /** The provisioning step and time so far (or the failing step), from the workspace's events. */
  progress: HTMLElement;
  run: RunProgress | null;
  /** updated_at of the workspace when its events were last read. */
  eventsFor: string | null;
  terminal: HTMLButtonElement;
  restart: HTMLButtonElement;
  remove: HTMLButtonElement;
  ws: Workspace;
}

/** The workspace list (live status by polling GET /workspaces) and the create form. */
export function createWorkspacesView(d: WorkspacesDeps) {
  // ---- create form --------------------------------------------------------------------
  const fieldError = (id: string) => h("p", { id, class: "field-error", "aria-live": "polite" });
  const nameErr = fieldError("name-error");
  const runtimeErr = fieldError("runtime-error");
  const tierErr = fieldError("tier-error");
  const formErr = fieldError("form-error");
  const name = h("input", { id: "ws-name", type: "text", autocomplete: "off", "aria-describedby": "name-error", placeholder: "prod-agent" });
  const runtime = h("select", { id: "ws-runtime", "aria-describedby": "runtime-error" }, ...RUNTIMES.map((r) => h("option", { value: r }, r)));
  runtime.value = "hermes";
  const tier = h("select", { id: "ws-tier", "aria-describedby": "tier-error" }, ...[1, 2, 3, 4].map((t) => h("option", { value: t }, String(t))));
  tier.value = "2";
  const submit = h("button", { type: "submit" }, "Create workspace");
  const fields: Record<string, { input: HTMLElement; error: HTMLElement }> = {
    name: { input: name, error: nameErr },
    runtime: { input: runtime, error: runtimeErr },
    tier: { input: tier, error: tierErr },
  };
  // novalidate: the API's own validation messages are the ones shown, next to their fields.
  const form = h(
    "form",
    { class: "create", novalidate: true, "aria-labelledby": "create-title" },
    h("h2", { id: "create-title" }, "New workspace"),
    h("div", { class: "field" }, h("label", { for: "ws-name" }, "Name"), name, nameErr),
    h(
      "div",
      { class: "field-row" },
      h("div", { class: "field" }, h("label", { for: "ws-runtime" }, "Runtime"), runtime, runtimeErr),
      h("div", { class: "field" }, h("label", { for: "ws-tier" }, "Tier"), tier, tierErr),
    ),
    submit,
    formErr,
  );

  function clearErrors(): void {
    for (const f of Object.values(fields)) {
      setText(f.error, "");
      f.input.removeAttribute("aria-invalid");
    }
    setText(formErr, "");
  }

  function showApiError(err: unknown): void {
    if (!(err instanceof ApiError)) {
      setText(formErr, String(err));
      return;
    }
    const byField = err.fieldErrors;
    const loose: string[] = [];
    for (const fe of byField) {
      const f = fe.field ? fields[fe.field.split(".")[0]!] : undefined;
      if (f) {
        f.error.textContent = f.error.textContent ? `${f.error.textContent}; ${fe.message}` : fe.message;
        f.input.setAttribute("aria-invalid", "true");
      } else {
        loose.push(fe.field ? `${fe.field}: ${fe.message}` : fe.message);
      }
    }
    if (!byField.length || loose.length) setText(formErr, [err.message, ...loose].join(" — "));
    const first = byField.map((fe) => fe.field && fields[fe.field.split(".")[0]!]).find(Boolean);
    (first ? first.input : name).focus();
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    clearErrors();
    submit.disabled = true;
    d.api
      .createWorkspace({ name: name.value, runtime: runtime.value, tier: Number(tier.value) })
      .then((ws) => {
        name.value = "";
        upsert(ws);
        announce(`Workspace ${ws.name} created: ${ws.status}`);
        schedule(0);
      })
      .catch((err) => {
        if (err instanceof ApiError && err.status === 401) return d.unauthorized(err.message);
        showApiError(err);
      })
      .finally(() => {
        submit.disabled = false;
      });
  });

  // ---- list ---------------------------------------------------------------------------
  const tbody = h("tbody");
  const listStatus = h("p", { class: "muted" }, "Loading…");
  const table = h(
    "table",
    { class: "workspaces" },
    h("caption", { class: "sr-only" }, "Workspaces"),
    h("thead", {}, h("tr", {}, ...["Name", "Runtime", "Tier", "Status", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
    tbody,
  );
  const rows = new Map<string, Row>();
  /** The newest this many are listed (and polled); "Show more" raises it. */
  let wanted = PAGE;
  const showMore = h("button", { type: "button", class: "show-more", hidden: true }, `Show ${PAGE} more`);
  showMore.addEventListener("click", () => {
    wanted += PAGE;
    showMore.disabled = true;
    schedule(0);
  });

  async function act(ws: Workspace, what: "restart" | "delete"): Promise<void> {
    const ok = await confirmDialog(
      what === "delete" ? `Delete ${ws.name}?` : `Restart ${ws.name}?`,
      what === "delete"
        ? "The workspace is removed with everything in it; open terminals to it end."
        : "The workspace restarts; open terminals to it end.",
      what === "delete" ? "Delete" : "Restart",
    );
    if (!ok) return;
    try {
      const moved = what === "delete" ? await d.api.deleteWorkspace(ws.id) : await d.api.restartWorkspace(ws.id);
      upsert(moved);
      announce(`Workspace ${ws.name}: ${moved.status}`);
      schedule(0);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return d.unauthorized(err.message);
      announce(`Could not ${what} ${ws.name}: ${(err as Error).message}`);
      setText(listStatus, `Could not ${what} ${ws.name}: ${(err as Error).message}`);
    }
  }

  function render(r: Row): void {
    const ws = r.ws;
    setText(r.status, ws.status);
    r.status.dataset.status = ws.status;
    // With the failing step known, the progress line says it all (step and message).
    const failedRun = ws.status === "failed" && r.run?.step === "failed";
    setText(r.error, ws.status === "failed" && ws.error && !failedRun ? ws.error : "");
    renderProgress(r);
    r.terminal.disabled = ws.status !== "ready";
    r.restart.disabled = ws.status !== "ready" && ws.status !== "failed";
    r.remove.disabled = ws.status === "removing" || ws.status === "removed";
  }

  function upsert(ws: Workspace): void {
    const existing = rows.get(ws.id);
    if (existing) {
      const before = existing.ws.status;
      existing.ws = ws;
      render(existing);
      if (before !== ws.status) announce(`Workspace ${ws.name} is now ${ws.status}`);
      return;
    }
    const status = h("span", { class: "status" });
    const error = h("span", { class: "ws-error" });
    const progress = h("span", { class: "ws-progress", "aria-live": "off" });
    progress.hidden = true;
    const terminal = h("button", { type: "button", onclick: () => d.openTerminal(r.ws) }, "Terminal");
    const sessions = h("button", { type: "button", onclick: () => d.openSessions(r.ws) }, "Sessions");
    const restart = h("button", { type: "button", onclick: () => void act(r.ws, "restart") }, "Restart");
    const remove = h("button", { type: "button", class: "danger", onclick: () => void act(r.ws, "delete") }, "Delete");
    for (const [b, what] of [[terminal, "Open a terminal in"], [sessions, "Terminal sessions of"], [restart, "Restart"], [remove, "Delete"]] as const) {
      b.setAttribute("aria-label", `${what} ${ws.name}`);
    }
    const tr = h(
      "tr",
      { "data-workspace": ws.id },
      h("th", { scope: "row" }, ws.name),
      h("td", {}, ws.runtime),
      h("td", {}, String(ws.tier)),
      h("td", {}, status, progress, error),
      h("td", { class: "actions" }, terminal, sessions, restart, remove),
    );
    const r: Row = { tr, status, error, progress, run: null, eventsFor: null, terminal, restart, remove, ws };
    rows.set(ws.id, r);
    render(r);
    // Newest first, as the API lists them.
    tbody.prepend(tr);
  }

  /** `list`: the newest workspaces, newest first; `more`: older ones exist beyond it. */
  function sync(list: Workspace[], more: boolean): void {
    const seen = new Set(list.map((w) => w.id));
    const oldest = list[list.length - 1];
    for (const [id, r] of rows) {
      if (seen.has(id)) continue;
      r.tr.remove();
      rows.delete(id);
      // Pushed past the end of a shortened list by newer ones: not gone, just not listed.
      const beyond = more && oldest !== undefined && olderThan(r.ws, oldest);
      if (!beyond) announce(`Workspace ${r.ws.name} was removed`);
    }
    for (const ws of [...list].reverse()) upsert(ws);
    // Rows added by "Show more" are older than those shown: keep the API's order.
    const order = list.map((w) => rows.get(w.id)!.tr);
    if (order.some((tr, i) => tbody.children[i] !== tr)) tbody.append(...order);
    setText(listStatus, list.length ? (more ? `Showing the newest ${list.length} workspaces.` : "") : "No workspaces yet: create one below.");
    table.hidden = list.length === 0;
    showMore.hidden = !more;
    showMore.disabled = false;
  }

  /** The API's list order: created_at, then id, both descending. */
  function olderThan(a: Workspace, b: Workspace): boolean {
    return a.created_at < b.created_at || (a.created_at === b.created_at && a.id < b.id);
  }

  // ---- provisioning progress ----------------------------------------------------------
  function renderProgress(r: Row): void {
    const show = r.run !== null && (TRANSITIONAL.includes(r.ws.status) ? r.ws.status !== "removing" : r.ws.status === "failed" && r.run.step === "failed");
    r.progress.hidden = !show;
    if (!show || !r.run) return;
    setText(r.progress, progressText(r.run, Date.now()));
    r.progress.dataset.step = r.run.step;
    r.progress.title = r.run.steps.join(" → ");
  }

  /** Reads the events of workspaces being provisioned (each poll) and of newly failed ones (once). */
  async function refreshProgress(): Promise<void> {
    const wanting = [...rows.values()].filter((r) =>
      r.ws.status === "provisioning" || r.ws.status === "restarting" ? true : r.ws.status === "failed" && r.eventsFor !== r.ws.updated_at,
    );
    await Promise.all(
      wanting.slice(0, 20).map(async (r) => {
        const forUpdate = r.ws.updated_at;
        try {
          r.run = latestRun(await d.api.workspaceEvents(r.ws.id));
          r.eventsFor = forUpdate;
          render(r);
        } catch (err) {
          // The list itself still shows the status; the next poll tries again.
          r.progress.title = `could not read the provisioning steps: ${(err as Error).message}`;
        }
      }),
    );
  }
  // The elapsed time moves on between polls.
  const ticker = setInterval(() => {
    for (const r of rows.values()) if (r.run && TRANSITIONAL.includes(r.ws.status)) renderProgress(r);
  }, 1000);

  // ---- polling ------------------------------------------------------------------------
  let timer: ReturnType<typeof setTimeout> | null = null;
  let stopped = false;
  let inflight = false;
  function schedule(ms: number): void {
    if (stopped) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => void poll(), ms);
  }
  async function poll(): Promise<void> {
    if (inflight) return schedule(200);
    inflight = true;
    try {
      const { workspaces, more } = await d.api.listWorkspaces(wanted);
      sync(workspaces, more);
      await refreshProgress();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        stopped = true;
        d.unauthorized(err.message);
        return;
      }
      setText(listStatus, `Could not refresh the list: ${(err as Error).message}`);
    } finally {
      inflight = false;
    }
    const busy = [...rows.values()].some((r) => TRANSITIONAL.includes(r.ws.status));
    schedule(busy ? POLL_FAST_MS : POLL_SLOW_MS);
  }

  const root = h("div", { class: "workspaces-view" }, h("h2", {}, "Workspaces"), listStatus, table, showMore, form);
  return {
    root,
    start(): void {
      void poll();
    },
    stop(): void {
      stopped = true;
      clearInterval(ticker);
      if (timer) clearTimeout(timer);
    },
  };
}
