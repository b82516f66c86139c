import type { ApiClient, AuditSession } from "../api.ts";
import { h, setText } from "../dom.ts";
import { formatBytes, formatCloseReason, formatDuration } from "../format.ts";
import type { Tab } from "./tabs.ts";

let counter = 0;

function row(s: AuditSession): HTMLTableRowElement {
  const opened = new Date(s.opened_at);
  const duration = s.duration_ms ?? Date.now() - opened.getTime();
  return h(
    "tr",
    { "data-session": s.id },
    h("td", {}, h("code", { title: s.id }, s.id.slice(0, 8))),
    h("td", {}, h("code", {}, s.token_prefix ?? "—"), s.client_addr ? ` from ${s.client_addr}` : ""),
    h("td", {}, h("time", { datetime: s.opened_at }, opened.toLocaleString())),
    h("td", {}, s.closed_at ? formatDuration(duration) : `${formatDuration(duration)} (open)`),
    h("td", { class: "reason" }, formatCloseReason(s.close_reason, s.exit_code, s.exit_signal)),
    h("td", { class: "num" }, formatBytes(s.bytes_in)),
    h("td", { class: "num" }, formatBytes(s.bytes_out)),
    h("td", {}, [s.worker_id, s.instance_id, s.os_user].filter(Boolean).join(" · ") || "—"),
  );
}

/** The audit of a workspace's terminal sessions: who, when, how long, why it ended, bytes. */
export function createAuditTab(api: ApiClient, workspace: { id: string; name: string }): Tab {
  const n = ++counter;
  const status = h("p", { class: "muted", role: "status" });
  const body = h("tbody");
  const refresh = h("button", { type: "button" }, "Refresh");
  const table = h(
    "table",
    { class: "audit" },
    h("caption", {}, `Terminal sessions of ${workspace.name}, newest first`),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ...["Session", "Who", "Opened", "Duration", "Ended because", "Bytes in", "Bytes out", "Worker · instance · user"].map((c) =>
          h("th", { scope: "col" }, c),
        ),
      ),
    ),
    body,
  );
  const heading = h("h2", { tabindex: -1 }, `Sessions · ${workspace.name}`);
  const panel = h("div", { class: "audit-panel" }, h("div", { class: "audit-head" }, heading, refresh), status, table);

  async function load(): Promise<void> {
    setText(status, "Loading…");
    try {
      const sessions = await api.terminalSessions(workspace.id);
      body.replaceChildren(...sessions.map(row));
      setText(status, sessions.length ? `${sessions.length} session${sessions.length === 1 ? "" : "s"}` : "No terminal sessions yet");
    } catch (err) {
      setText(status, `Could not load the sessions: ${(err as Error).message}`);
    }
  }
  refresh.addEventListener("click", () => void load());

  return {
    id: `audit-${n}`,
    title: `${workspace.name} · Sessions`,
    panel,
    activated() {
      void load();
      heading.focus();
    },
    dispose() {},
  };
}
