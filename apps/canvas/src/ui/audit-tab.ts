import type { ApiClient, AuditSession } from "../api.ts";
import { h, setText } from "../dom.ts";
import { formatBytes, formatCloseReason, formatDuration } from "../format.ts";
import type { Tab } from "./tabs.ts";

let counter = 0;

/** What a row offers: Play for a recorded session, Watch for a live one. */
export interface SessionActions {
  play(sessionId: string): void;
  watch(sessionId: string): void;
}

function recordingCell(s: AuditSession, actions: SessionActions | undefined): HTMLTableCellElement {
  const cell = h("td", { class: "recording" });
  const rec = s.recording;
  if (rec && actions) {
    const play = h("button", { type: "button", class: "play", onclick: () => actions.play(s.id), "aria-label": `Play the recording of session ${s.id.slice(0, 8)}` }, "Play");
    cell.append(play, ` ${formatBytes(rec.bytes)}${rec.truncated ? " (truncated)" : ""}`);
  } else cell.append(rec ? formatBytes(rec.bytes) : "—");
  if (!s.closed_at && actions) {
    cell.append(" ", h("button", { type: "button", class: "watch", onclick: () => actions.watch(s.id), "aria-label": `Watch session ${s.id.slice(0, 8)} live` }, "Watch"));
  }
  return cell;
}

function row(s: AuditSession, actions?: SessionActions): HTMLTableRowElement {
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
    recordingCell(s, actions),
  );
}

/** The audit of a workspace's terminal sessions: who, when, how long, why it ended, bytes. */
export function createAuditTab(api: ApiClient, workspace: { id: string; name: string }, actions?: SessionActions): Tab {
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
        ...["Session", "Who", "Opened", "Duration", "Ended because", "Bytes in", "Bytes out", "Worker · instance · user", "Recording"].map((c) =>
          h("th", { scope: "col" }, c),
        ),
      ),
    ),
    body,
  );
  const heading = h("h2", { tabindex: -1 }, `Sessions · ${workspace.name}`);
  const panel = h("div", { class: "audit-panel" }, h("div", { class: "audit-head" }, heading, refresh), status, table);

  // Pages of the audit: "Show more" follows the API's cursor; Refresh starts again from the newest.
  const more = h("button", { type: "button", class: "show-more" }, "Show more");
  more.hidden = true;
  let cursor: string | null = null;
  let shown = 0;
  async function load(append = false): Promise<void> {
    setText(status, "Loading…");
    more.disabled = true;
    try {
      const page = await api.terminalSessions(workspace.id, append ? cursor : null);
      const toRow = (x: AuditSession) => row(x, actions);
      if (append) body.append(...page.sessions.map(toRow));
      else body.replaceChildren(...page.sessions.map(toRow));
      shown = (append ? shown : 0) + page.sessions.length;
      cursor = page.next_cursor;
      more.hidden = cursor === null;
      const count = `${shown}${cursor ? "+" : ""} session${shown === 1 && !cursor ? "" : "s"}`;
      setText(status, shown ? count : "No terminal sessions yet");
    } catch (err) {
      setText(status, `Could not load the sessions: ${(err as Error).message}`);
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener("click", () => void load(true));
  panel.append(more);
  refresh.addEventListener("click", () => void load());

  return {
    id: `audit-${n}`,
    title: `${workspace.name} · Sessions`,
    panel,
    activated() {
      void load();
      heading.focus();
    },
    dispose() {
      // Nothing to release: the Sessions tab holds no socket or timer.
    },
  };
}
