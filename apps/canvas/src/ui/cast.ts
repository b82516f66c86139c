/** An asciicast v2 recording, parsed for playback. */
export interface Cast {
  width: number;
  height: number;
  title: string;
  /** Output, resizes and markers in order, with their time on the compressed timeline. */
  events: CastEvent[];
  /** Length of the compressed timeline, in seconds. */
  duration: number;
}

export type CastEvent = { at: number; kind: "o"; data: string } | { at: number; kind: "r"; cols: number; rows: number } | { at: number; kind: "m"; label: string };

/** Pauses longer than this play as this long (idle time compressed, as asciinema's idle_time_limit). */
export const IDLE_LIMIT_SEC = 2;

/** Parses a .cast file; lines it cannot read are skipped (a truncated last line, an unknown event). */
export function parseCast(text: string, idleLimit = IDLE_LIMIT_SEC): Cast {
  const lines = text.split("\n");
  let header: { width?: unknown; height?: unknown; title?: unknown } = {};
  try {
    header = JSON.parse(lines[0] ?? "{}") as typeof header;
  } catch {
    header = {};
  }
  const events: CastEvent[] = [];
  let last = 0;
  let at = 0;
  for (const line of lines.slice(1)) {
    if (!line) continue;
    let e: unknown;
    try {
      e = JSON.parse(line);
    } catch {
      continue; // a line cut by a crash: the rest still plays
    }
    if (!Array.isArray(e) || typeof e[0] !== "number" || typeof e[2] !== "string") continue;
    const t = e[0];
    at += Math.min(Math.max(0, t - last), idleLimit);
    last = Math.max(last, t);
    if (e[1] === "o") events.push({ at, kind: "o", data: e[2] });
    else if (e[1] === "r") {
      const m = /^(\d+)x(\d+)$/.exec(e[2]);
      if (m) events.push({ at, kind: "r", cols: Number(m[1]), rows: Number(m[2]) });
    } else if (e[1] === "m") events.push({ at, kind: "m", label: e[2] });
  }
  const width = typeof header.width === "number" ? header.width : 80;
  const height = typeof header.height === "number" ? header.height : 24;
  return { width, height, title: typeof header.title === "string" ? header.title : "", events, duration: at };
}

/** m:ss */
export function clock(sec: number): string {
  const s = Math.max(0, Math.floor(sec));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
