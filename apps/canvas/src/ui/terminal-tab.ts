import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import { ApiError, type ApiClient } from "../api.ts";
import { h, setText } from "../dom.ts";
import { TerminalConnection, TicketError, type ConnectionState, type SocketLike } from "../terminal/connection.ts";
import { announce } from "./announce.ts";
import { registerTerminal } from "./automation.ts";
import type { Tab } from "./tabs.ts";

let counter = 0;

export interface TerminalTabDeps {
  api: ApiClient;
  workspace: { id: string; name: string };
  /** F6: leave the terminal (it keeps Tab for the shell's completion). */
  leave(): void;
}

function terminalEndpoint(workspaceId: string): string {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/workspaces/${encodeURIComponent(workspaceId)}/terminal`;
}

/** A Terminal tab: xterm.js with the fit addon on a TerminalConnection, and a status bar that says what is going on. */
export function createTerminalTab(d: TerminalTabDeps): Tab {
  const n = ++counter;
  const title = `${d.workspace.name} · Terminal ${n}`;
  const stateEl = h("span", { class: "term-state", "data-state": "connecting" }, "Connecting…");
  const detailEl = h("span", { class: "term-detail" });
  const linkEl = h("a", { class: "term-link", target: "_blank", rel: "noopener" });
  linkEl.hidden = true;
  const reconnectBtn = h("button", { class: "term-reconnect", type: "button" }, "Reconnect");
  reconnectBtn.hidden = true;
  const retryBtn = h("button", { type: "button" }, "Retry now");
  retryBtn.hidden = true;
  const host = h("div", { class: "term-host" });
  const bar = h(
    "div",
    { class: "term-bar" },
    stateEl,
    detailEl,
    linkEl,
    retryBtn,
    reconnectBtn,
    h("span", { class: "term-hint" }, "F6 leaves the terminal"),
  );
  const panel = h("div", { class: "term-panel", "data-workspace": d.workspace.id }, bar, host);

  const term = new Terminal({
    cursorBlink: true,
    scrollback: 10_000,
    fontSize: 14,
    // At line height 1 the DOM renderer clips underscores of common monospace fonts.
    lineHeight: 1.2,
    fontFamily: '"DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace',
    theme: { background: "#111418", foreground: "#e6e6e6" },
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.attachCustomKeyEventHandler((e) => {
    if (e.key === "F6" && e.type === "keydown") {
      d.leave();
      return false;
    }
    return true;
  });

  const conn = new TerminalConnection(
    {
      endpoint: terminalEndpoint(d.workspace.id),
      ticket: async () => {
        try {
          return await d.api.terminalTicket(d.workspace.id);
        } catch (err) {
          // A revoked token or a gone workspace will not come back by retrying.
          const fatal = err instanceof ApiError && [401, 403, 404].includes(err.status);
          throw new TicketError(err instanceof Error ? err.message : String(err), fatal);
        }
      },
      socket: (url, protocol) => new WebSocket(url, protocol) as unknown as SocketLike,
    },
    {
      output: (data, end) => term.write(data, () => conn.consumed(end)),
      gap: (from, to) =>
        term.write(`\r\n\x1b[33m[${to - from} bytes of output were older than the replay window and are not shown]\x1b[0m\r\n`, () =>
          conn.consumed(to),
        ),
      state: (s) => showState(s),
      newSession: () => term.write("\r\n\x1b[2m--- new session ---\x1b[0m\r\n"),
    },
  );
  term.onData((data) => conn.send(data));
  term.onBinary((data) => conn.send(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));
  term.onResize(({ cols, rows }) => conn.resize(cols, rows));
  retryBtn.addEventListener("click", () => conn.retryNow());
  reconnectBtn.addEventListener("click", () => {
    conn.restart();
    term.focus();
  });

  let lastKind: ConnectionState["kind"] | null = null;
  function showState(s: ConnectionState): void {
    stateEl.dataset.state = s.kind;
    panel.dataset.state = s.kind;
    retryBtn.hidden = s.kind !== "reconnecting";
    reconnectBtn.hidden = s.kind !== "ended";
    linkEl.hidden = true;
    let said = "";
    switch (s.kind) {
      case "idle":
      case "connecting":
        setText(stateEl, "Connecting…");
        setText(detailEl, "");
        said = `Terminal ${n} of ${d.workspace.name}: connecting`;
        break;
      case "open":
        setText(stateEl, "Connected");
        setText(detailEl, "");
        said = `Terminal ${n} of ${d.workspace.name}: connected`;
        break;
      case "reconnecting":
        setText(stateEl, `Reconnecting… (attempt ${s.attempt})`);
        setText(detailEl, s.because);
        said = `Terminal ${n} of ${d.workspace.name}: connection lost, reconnecting`;
        break;
      case "ended": {
        const exit = s.exit;
        const headline = exit
          ? `The shell exited${exit.signal ? ` (signal ${exit.signal})` : exit.code !== null ? ` (code ${exit.code})` : ""}`
          : s.meaning.title;
        setText(stateEl, headline);
        setText(detailEl, s.message && s.message !== headline ? s.message : "");
        if (s.meaning.link) {
          linkEl.href = s.meaning.link.href;
          linkEl.textContent = s.meaning.link.text;
          linkEl.hidden = false;
        }
        term.write(`\r\n\x1b[2m[${headline}]\x1b[0m\r\n`);
        said = `Terminal ${n} of ${d.workspace.name}: ${headline}`;
        break;
      }
    }
    if (s.kind !== lastKind) announce(said);
    lastKind = s.kind;
  }

  // Fit whenever the panel changes size (window, layout); hidden panels have no size to fit.
  let fitQueued = false;
  const refit = () => {
    if (fitQueued) return;
    fitQueued = true;
    requestAnimationFrame(() => {
      fitQueued = false;
      if (panel.hidden || host.clientWidth === 0 || host.clientHeight === 0) return;
      fit.fit();
    });
  };
  const ro = new ResizeObserver(refit);
  let opened = false;
  const unregister = registerTerminal({
    workspaceId: d.workspace.id,
    title,
    get state() {
      return conn.state.kind;
    },
    get session() {
      return conn.session;
    },
    get offset() {
      return conn.received;
    },
    get size() {
      return { cols: term.cols, rows: term.rows };
    },
    text() {
      const b = term.buffer.active;
      const lines: string[] = [];
      for (let i = 0; i < b.length; i++) {
        const line = b.getLine(i);
        if (!line) continue;
        const t = line.translateToString(true);
        // A wrapped line continues the previous one: join it back.
        if (line.isWrapped && lines.length) lines[lines.length - 1] += t;
        else lines.push(t);
      }
      return lines.join("\n");
    },
    cursorLine() {
      const b = term.buffer.active;
      return b.getLine(b.baseY + b.cursorY)?.translateToString(true) ?? "";
    },
  });

  return {
    id: `term-${n}`,
    title,
    panel,
    activated() {
      if (!opened) {
        opened = true;
        term.open(host);
        fit.fit();
        conn.resize(term.cols, term.rows);
        ro.observe(host);
        conn.start();
      } else {
        refit();
      }
      term.focus();
    },
    dispose() {
      ro.disconnect();
      unregister();
      conn.dispose();
      term.dispose();
    },
  };
}
