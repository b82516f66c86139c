/**
 * A read-only view of the open terminals on `window.moleculeCanvas`, for browser
 * automation (end-to-end tests, scripted checks): what a user sees on screen,
 * including scrollback that the DOM renderer does not keep as rows.
 */
export interface TerminalView {
  workspaceId: string;
  title: string;
  readonly state: string;
  readonly session: string | null;
  readonly offset: number;
  readonly size: { cols: number; rows: number };
  /** The whole buffer (scrollback + screen), wrapped lines joined. */
  text(): string;
  /** The line the cursor is on. */
  cursorLine(): string;
  /** The cursor's cell on the screen (columns count wide characters as two). */
  cursor(): { x: number; y: number };
  /** Which renderer draws the terminal: webgl, or dom when WebGL is unavailable. */
  readonly renderer: string;
  readonly fontSize: number;
  /** The selected text ("" when none). */
  selection(): string;
  /** The theme's background colour (it follows the system's light or dark). */
  readonly background: string;
  /** Where `text` is on the screen now (first match, in cells), or null when it is not in view. */
  locate(text: string): { col: number; row: number } | null;
}

const terminals = new Set<TerminalView>();

declare global {
  interface Window {
    moleculeCanvas?: { terminals(): TerminalView[] };
  }
}

export function registerTerminal(t: TerminalView): () => void {
  terminals.add(t);
  window.moleculeCanvas ??= { terminals: () => [...terminals] };
  return () => terminals.delete(t);
}
