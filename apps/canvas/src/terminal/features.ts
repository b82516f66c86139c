/**
 * What users expect of a terminal beyond the bytes: GPU rendering with a fallback, clickable
 * links, search, real widths for emoji and CJK, the clipboard (selection, keys, OSC 52), inline
 * images (iTerm's protocol), font size, and a theme that follows the system's light or dark.
 */
import { ClipboardAddon } from "@xterm/addon-clipboard";
import { ImageAddon } from "@xterm/addon-image";
import { SearchAddon } from "@xterm/addon-search";
import { Unicode11Addon } from "@xterm/addon-unicode11";
import { WebLinksAddon } from "@xterm/addon-web-links";
import { WebglAddon } from "@xterm/addon-webgl";
import type { ITheme, Terminal } from "@xterm/xterm";

export const DARK_THEME: ITheme = {
  background: "#111418",
  foreground: "#e6e6e6",
  cursor: "#e6e6e6",
  selectionBackground: "#3a4a66",
};
export const LIGHT_THEME: ITheme = {
  background: "#fbfbfc",
  foreground: "#1b1f24",
  cursor: "#1b1f24",
  cursorAccent: "#fbfbfc",
  selectionBackground: "#b9cdf5",
  // The ANSI palette's defaults are made for dark backgrounds: darker yellows and whites here.
  yellow: "#8a6a00",
  brightYellow: "#9a6700",
  white: "#5b6472",
  brightWhite: "#1b1f24",
};

export const FONT_SIZES = { min: 8, max: 32, initial: 14 } as const;

export type Renderer = "webgl" | "dom";

const darkQuery = () => window.matchMedia("(prefers-color-scheme: dark)");

/** Opens a link the shell printed in a new tab, with no way back to this page (noopener). */
export function openLink(uri: string): void {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return;
  }
  // Only web links: a javascript: or data: link printed by a program must do nothing here.
  if (url.protocol !== "http:" && url.protocol !== "https:") return;
  window.open(url.href, "_blank", "noopener,noreferrer");
}

export interface TerminalFeatures {
  readonly search: SearchAddon;
  readonly renderer: Renderer;
  readonly fontSize: number;
  /** Font size by a step (+1/-1) or back to the initial size (0). */
  zoom(step: -1 | 0 | 1): void;
  /** The current selection to the system clipboard; false when nothing is selected. */
  copySelection(): Promise<boolean>;
  /** The system clipboard into the terminal, as a paste (bracketed when the program asked). */
  paste(): Promise<void>;
  dispose(): void;
}

/**
 * Loads the addons that work before `open` and, via `opened()`, the renderer (WebGL needs the
 * element). `onRenderer` tells which renderer is in use (the DOM one when WebGL is unavailable
 * or its context is lost).
 */
export function loadTerminalFeatures(term: Terminal, o: { onRenderer?(r: Renderer): void; onFontSize?(px: number): void } = {}) {
  const search = new SearchAddon({ highlightLimit: 1000 });
  term.loadAddon(search);
  term.loadAddon(new WebLinksAddon((_ev, uri) => openLink(uri)));
  const unicode = new Unicode11Addon();
  term.loadAddon(unicode);
  term.unicode.activeVersion = "11";
  // OSC 52 from the shell writes the system clipboard (reads are refused: a program must not
  // be able to read what the user copied elsewhere).
  term.loadAddon(
    new ClipboardAddon(undefined, {
      readText: () => "",
      writeText: (_sel, text) => navigator.clipboard.writeText(text),
    }),
  );
  // Sixel decoding compiles WebAssembly, which the CSP does not allow ('wasm-unsafe-eval'); iTerm's protocol needs none.
  term.loadAddon(new ImageAddon({ sixelSupport: false, iipSupport: true, storageLimit: 32 }));

  let renderer: Renderer = "dom";
  let webgl: WebglAddon | null = null;
  const setRenderer = (r: Renderer) => {
    renderer = r;
    o.onRenderer?.(r);
  };

  const applyTheme = () => {
    term.options.theme = darkQuery().matches ? DARK_THEME : LIGHT_THEME;
  };
  applyTheme();
  const mq = darkQuery();
  mq.addEventListener("change", applyTheme);

  // Copy on selection, as X11 terminals and ttyd do. The Clipboard API may refuse (no focus,
  // no permission): the selection is still there for Ctrl/Cmd-C.
  const sel = term.onSelectionChange(() => {
    if (term.hasSelection()) void navigator.clipboard.writeText(term.getSelection()).catch(() => undefined);
  });

  const features: TerminalFeatures & { opened(): void } = {
    search,
    get renderer() {
      return renderer;
    },
    get fontSize() {
      return term.options.fontSize ?? FONT_SIZES.initial;
    },
    zoom(step) {
      const now = term.options.fontSize ?? FONT_SIZES.initial;
      const next = step === 0 ? FONT_SIZES.initial : Math.min(FONT_SIZES.max, Math.max(FONT_SIZES.min, now + step));
      if (next === now) return;
      term.options.fontSize = next;
      o.onFontSize?.(next);
    },
    async copySelection() {
      if (!term.hasSelection()) return false;
      await navigator.clipboard.writeText(term.getSelection());
      return true;
    },
    async paste() {
      const text = await navigator.clipboard.readText();
      if (text) term.paste(text);
    },
    opened() {
      try {
        webgl = new WebglAddon();
        webgl.onContextLoss(() => {
          // The GPU went away (driver reset, too many contexts): the DOM renderer takes over.
          webgl?.dispose();
          webgl = null;
          setRenderer("dom");
        });
        term.loadAddon(webgl);
        setRenderer("webgl");
      } catch {
        // No WebGL2 here (no GPU, disabled, blocked): xterm.js keeps its DOM renderer.
        webgl = null;
        setRenderer("dom");
      }
    },
    dispose() {
      mq.removeEventListener("change", applyTheme);
      sel.dispose();
    },
  };
  return features;
}

/** True for the platform's primary modifier: Cmd on macOS, Ctrl elsewhere. */
export function primaryModifier(e: KeyboardEvent): boolean {
  return /Mac|iPhone|iPad/.test(navigator.platform) ? e.metaKey : e.ctrlKey;
}
