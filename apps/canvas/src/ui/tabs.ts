import { h } from "../dom.ts";

export interface Tab {
  id: string;
  title: string;
  panel: HTMLElement;
  /** Shown (again): fit, refresh, focus. */
  activated(): void;
  dispose(): void;
}

/** The tab strip on the right: Terminal and Sessions tabs of any workspace, several at once. */
export function createTabs(root: HTMLElement, empty: HTMLElement) {
  const list = h("div", { role: "tablist", "aria-label": "Open tabs", class: "tablist" });
  const panels = h("div", { class: "tabpanels" }, empty);
  root.append(list, panels);
  const tabs = new Map<string, { tab: Tab; button: HTMLButtonElement; item: HTMLElement }>();
  let active: string | null = null;

  function activate(id: string): void {
    const t = tabs.get(id);
    if (!t) return;
    active = id;
    for (const [k, v] of tabs) {
      const on = k === id;
      v.button.setAttribute("aria-selected", String(on));
      v.button.tabIndex = on ? 0 : -1;
      v.tab.panel.hidden = !on;
    }
    empty.hidden = true;
    t.tab.activated();
  }

  function close(id: string): void {
    const t = tabs.get(id);
    if (!t) return;
    const ids = [...tabs.keys()];
    const i = ids.indexOf(id);
    tabs.delete(id);
    t.item.remove();
    t.tab.panel.remove();
    t.tab.dispose();
    if (active === id) {
      active = null;
      const next = ids[i + 1] ?? ids[i - 1];
      if (next && tabs.has(next)) activate(next);
      else empty.hidden = false;
    }
  }

  // Arrow keys move between tabs (the WAI-ARIA tabs pattern).
  list.addEventListener("keydown", (e) => {
    if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
    const ids = [...tabs.keys()];
    const i = active ? ids.indexOf(active) : -1;
    const next = ids[(i + (e.key === "ArrowRight" ? 1 : ids.length - 1)) % ids.length];
    if (next) {
      activate(next);
      tabs.get(next)?.button.focus();
    }
  });

  return {
    open(tab: Tab): void {
      const panelId = `panel-${tab.id}`;
      tab.panel.id = panelId;
      tab.panel.setAttribute("role", "tabpanel");
      tab.panel.setAttribute("aria-labelledby", `tab-${tab.id}`);
      tab.panel.hidden = true;
      const button = h("button", { role: "tab", id: `tab-${tab.id}`, "aria-controls": panelId, "aria-selected": "false", class: "tab", onclick: () => activate(tab.id) }, tab.title);
      const closer = h("button", { class: "tab-close", "aria-label": `Close ${tab.title}`, title: "Close", onclick: () => close(tab.id) }, "×");
      const item = h("div", { class: "tabitem" }, button, closer);
      list.append(item);
      panels.append(tab.panel);
      tabs.set(tab.id, { tab, button, item });
      activate(tab.id);
    },
    activate,
    close,
    /** Focus the active tab's button (F6 out of a terminal). */
    focusStrip(): void {
      if (active) tabs.get(active)?.button.focus();
    },
    closeAll(): void {
      for (const id of [...tabs.keys()]) close(id);
    },
  };
}
export type Tabs = ReturnType<typeof createTabs>;
