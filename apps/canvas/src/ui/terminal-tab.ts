import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import { ApiError, type ApiClient } from "../api.ts";
import { h, setText } from "../dom.ts";
import { FONT_SIZES, loadTerminalFeatures, primaryModifier } from "../terminal/features.ts";
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
  /** Watch this live session (read-only viewer) instead of opening a shell. */
  watch?: string;
}

function terminalEndpoint(workspaceId: string): string {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/workspaces/${encodeURIComponent(workspaceId)}/terminal`;
}

/**
 * A Terminal tab: xterm.js (WebGL or DOM rendering, links, search, Unicode 11 widths, clipboard,
 * inline images) on a TerminalConnection, and a status bar that says what is going on.
 */
export function createTerminalTab(d: TerminalTabDeps): Tab {
  const n = ++counter;
  const title = d.watch ? `${d.workspace.name} · Watching ${d.watch.slice(0, 8)}` : `${d.workspace.name} · Terminal ${n}`;
  // "2 watching": presence, shown once anyone watches this session.
  const watchingEl = h("span", { class: "term-watching", "aria-live": "polite" });
  watchingEl.hidden = true;
  const stateEl = h("span", { class: "term-state", "data-state": "connecting" }, "Connecting…");
  const detailEl = h("span", { class: "term-detail" });
  const linkEl = h("a", { class: "term-link", target: "_blank", rel: "noopener" });
  linkEl.hidden = true;
  const reconnectBtn = h("button", { class: "term-reconnect", type: "button" }, "Reconnect");
  reconnectBtn.hidden = true;
  const retryBtn = h("button", { type: "button" }, "Retry now");
  retryBtn.hidden = true;
  const host = h("div", { class: "term-host" });
  const smaller = h("button", { type: "button", class: "term-font", "aria-label": "Smaller text", title: "Smaller text (Ctrl/Cmd -)" }, "A−");
  const larger = h("button", { type: "button", class: "term-font", "aria-label": "Larger text", title: "Larger text (Ctrl/Cmd +)" }, "A+");
  const findBtn = h("button", { type: "button", "aria-label": "Search the terminal", title: "Search (Ctrl/Cmd-F)" }, "Search");
  const bar = h(
    "div",
    { class: "term-bar" },
    stateEl,
    detailEl,
    watchingEl,
    linkEl,
    retryBtn,
    reconnectBtn,
    h("span", { class: "term-hint" }, "F6 leaves the terminal"),
    smaller,
    larger,
    findBtn,
  );

  // ---- search box (Ctrl/Cmd-F): Enter next, Shift-Enter previous, Escape closes -----------
  const searchInput = h("input", {
    type: "search",
    class: "term-search-input",
    "aria-label": "Search the terminal output",
    placeholder: "Search",
    autocomplete: "off",
    spellcheck: "false",
  });
  const searchCount = h("span", { class: "term-search-count", "aria-live": "polite" });
  const prevBtn = h("button", { type: "button", "aria-label": "Previous match", title: "Previous (Shift-Enter)" }, "↑");
  const nextBtn = h("button", { type: "button", "aria-label": "Next match", title: "Next (Enter)" }, "↓");
  const closeSearchBtn = h("button", { type: "button", "aria-label": "Close search", title: "Close (Escape)" }, "×");
  const searchBox = h("div", { class: "term-search", role: "search" }, searchInput, searchCount, prevBtn, nextBtn, closeSearchBtn);
  searchBox.hidden = true;
  const panel = h("div", { class: "term-panel", "data-workspace": d.workspace.id }, bar, searchBox, host);

  const term = new Terminal({
    cursorBlink: true,
    scrollback: 10_000,
    fontSize: FONT_SIZES.initial,
    // At line height 1 the DOM renderer clips underscores of common monospace fonts.
    lineHeight: 1.2,
    fontFamily: '"DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace',
    // The Unicode 11 widths and the search/image addons use the proposed API.
    allowProposedApi: true,
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  const features = loadTerminalFeatures(term, {
    onRenderer: (r) => {
      panel.dataset.renderer = r;
    },
    onFontSize: () => refit(),
  });
  const decorations = {
    matchBackground: "#6b5b00",
    matchOverviewRuler: "#d4b400",
    activeMatchBackground: "#d4b400",
    activeMatchBorder: "#ffffff",
    activeMatchColorOverviewRuler: "#ffea00",
  };
  const find = (forward: boolean, incremental = false) => {
    const q = searchInput.value;
    if (!q) {
      features.search.clearDecorations();
      setText(searchCount, "");
      return;
    }
    const opts = { decorations, incremental };
    const found = forward ? features.search.findNext(q, opts) : features.search.findPrevious(q, opts);
    if (!found) setText(searchCount, "No matches");
  };
  features.search.onDidChangeResults(({ resultIndex, resultCount }) => {
    if (!searchInput.value) return;
    setText(searchCount, resultCount === 0 ? "No matches" : resultIndex < 0 ? `${resultCount}+ matches` : `${resultIndex + 1} of ${resultCount}`);
  });
  function openSearch(): void {
    searchBox.hidden = false;
    const selected = term.getSelection();
    if (selected && !selected.includes("\n")) searchInput.value = selected;
    searchInput.focus();
    searchInput.select();
    if (searchInput.value) find(true, true);
  }
  function closeSearch(): void {
    searchBox.hidden = true;
    features.search.clearDecorations();
    setText(searchCount, "");
    term.focus();
  }
  searchInput.addEventListener("input", () => find(true, true));
  searchInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      find(!e.shiftKey);
    } else if (e.key === "Escape") {
      e.preventDefault();
      closeSearch();
    }
  });
  prevBtn.addEventListener("click", () => find(false));
  nextBtn.addEventListener("click", () => find(true));
  closeSearchBtn.addEventListener("click", closeSearch);
  findBtn.addEventListener("click", openSearch);
  // The buttons give the keyboard back to the shell.
  smaller.addEventListener("click", () => {
    features.zoom(-1);
    term.focus();
  });
  larger.addEventListener("click", () => {
    features.zoom(1);
    term.focus();
  });

  term.attachCustomKeyEventHandler((e) => {
    if (e.type !== "keydown") return true;
    if (e.key === "F6") {
      d.leave();
      return false;
    }
    const mod = primaryModifier(e);
    const key = e.key.toLowerCase();
    if (mod && key === "f") {
      e.preventDefault();
      openSearch();
      return false;
    }
    // Copy with a selection; without one Ctrl-C stays the shell's interrupt. Ctrl-Shift-C copies too, as in Linux terminals.
    if (mod && key === "c" && (e.shiftKey || term.hasSelection())) {
      e.preventDefault();
      void features.copySelection().then(
        () => term.clearSelection(),
        (err: Error) => announce(`Could not copy: ${err.message}`),
      );
      return false;
    }
    // Paste: the browser's own paste event reaches xterm.js (bracketed paste when asked), not ^V.
    if (mod && key === "v") return false;
    if (mod && !e.altKey && (key === "=" || key === "+" || key === "-" || key === "0")) {
      e.preventDefault();
      features.zoom(key === "-" ? -1 : key === "0" ? 0 : 1);
      return false;
    }
    return true;
  });

  const conn = new TerminalConnection(
    {
      endpoint: terminalEndpoint(d.workspace.id),
      ticket: async () => {
        try {
          return await (d.watch ? d.api.viewTicket(d.workspace.id) : d.api.terminalTicket(d.workspace.id));
        } catch (err) {
          // A revoked token or a gone workspace will not come back by retrying.
          const fatal = err instanceof ApiError && [401, 403, 404].includes(err.status);
          throw new TicketError(err instanceof Error ? err.message : String(err), fatal);
        }
      },
      socket: (url, protocol) => new WebSocket(url, protocol) as unknown as SocketLike,
      ...(d.watch ? { watch: d.watch } : {}),
    },
    {
      output: (data, end) => term.write(data, () => conn.consumed(end)),
      gap: (from, to) =>
        term.write(`\r\n\x1b[33m[${to - from} bytes of output were older than the replay window and are not shown]\x1b[0m\r\n`, () =>
          conn.consumed(to),
        ),
      state: (s) => showState(s),
      newSession: () => term.write("\r\n\x1b[2m--- new session ---\x1b[0m\r\n"),
      viewers: (m) => {
        watchingEl.hidden = m.count === 0;
        setText(watchingEl, `${m.count} watching`);
        watchingEl.title = m.viewers.map((v) => `${v.label ?? "?"} from ${v.address ?? "?"} since ${new Date(v.since).toLocaleTimeString()}`).join("\n");
      },
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
    reconnectBtn.hidden = s.kind !== "ended" || d.watch !== undefined;
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
        setText(stateEl, d.watch ? "Watching (read-only)" : "Connected");
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
    cursor() {
      const b = term.buffer.active;
      return { x: b.cursorX, y: b.cursorY };
    },
    get renderer() {
      return features.renderer;
    },
    get fontSize() {
      return features.fontSize;
    },
    selection() {
      return term.getSelection();
    },
    get background() {
      return term.options.theme?.background ?? "";
    },
    locate(needle) {
      const b = term.buffer.active;
      for (let row = 0; row < term.rows; row++) {
        const line = b.getLine(b.viewportY + row);
        if (!line) continue;
        // Columns, not string indices: a wide character takes two cells.
        let text = "";
        const cols: number[] = [];
        for (let x = 0; x < line.length; x++) {
          const cell = line.getCell(x);
          if (!cell || cell.getWidth() === 0) continue;
          const chars = cell.getChars() || " ";
          // One entry per UTF-16 unit, as indexOf counts them.
          for (let k = 0; k < chars.length; k++) cols.push(x);
          text += chars;
        }
        const i = text.indexOf(needle);
        if (i >= 0) return { col: cols[i] ?? i, row };
      }
      return null;
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
        features.opened();
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
      features.dispose();
      conn.dispose();
      term.dispose();
    },
  };
}
