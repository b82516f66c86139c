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
