import { Terminal } from "@xterm/xterm";
import type { ApiClient } from "../api.ts";
import { h, setText } from "../dom.ts";
import { registerTerminal } from "./automation.ts";
import { clock, parseCast, type Cast } from "./cast.ts";
import type { Tab } from "./tabs.ts";

let counter = 0;
const SPEEDS = [1, 2, 4] as const;

/**
 * Plays a session's recording in xterm.js with its recorded timing: play/pause, 1x/2x/4x, seeking on
 * a timeline (the screen is rebuilt up to that point at once), idle time compressed, Download .cast.
 */
export function createPlayerTab(api: ApiClient, workspace: { id: string; name: string }, sessionId: string): Tab {
  const n = ++counter;
  const title = `${workspace.name} · Recording ${sessionId.slice(0, 8)}`;
  const status = h("span", { class: "player-status", role: "status" }, "Loading…");
  const playBtn = h("button", { type: "button", class: "player-play", disabled: true }, "Play");
  const speedBtns = SPEEDS.map((s) => h("button", { type: "button", class: "player-speed", "aria-pressed": String(s === 1), "data-speed": String(s) }, `${s}x`));
  const timeline = h("input", { type: "range", class: "player-timeline", min: "0", max: "0", step: "any", value: "0", "aria-label": "Position in the recording" });
  const timeEl = h("span", { class: "player-time" }, "0:00 / 0:00");
  const download = h("a", { class: "player-download", download: `${sessionId}.cast`, href: "#" }, "Download .cast");
  download.hidden = true;
  const host = h("div", { class: "term-host player-host" });
  const bar = h("div", { class: "term-bar player-bar" }, playBtn, ...speedBtns, timeline, timeEl, status, download);
  const panel = h("div", { class: "term-panel player-panel", "data-session": sessionId }, bar, host);

  const term = new Terminal({ scrollback: 10_000, fontSize: 14, lineHeight: 1.2, fontFamily: '"DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace', disableStdin: true });
  let cast: Cast | null = null;
  let blobUrl: string | null = null;
  /** Next event to play, the position (compressed seconds) and the wall clock it was at. */
  let next = 0;
  let position = 0;
  let playing = false;
  let speed = 1;
  let wallAt = 0;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let state: "loading" | "ready" | "playing" | "paused" | "ended" | "failed" = "loading";
  /** xterm parses writes later: what to do once every write so far is on screen. */
  let inFlight = 0;
  let whenDrawn: (() => void) | null = null;
  function write(data: string): void {
    inFlight++;
    term.write(data, () => {
      inFlight--;
      if (inFlight === 0 && whenDrawn) {
        const f = whenDrawn;
        whenDrawn = null;
        f();
      }
    });
  }
  function afterDrawn(f: () => void): void {
    if (inFlight === 0) f();
    else whenDrawn = f;
  }

  function setState(s: typeof state): void {
    state = s;
    panel.dataset.state = s;
    setText(playBtn, s === "playing" ? "Pause" : s === "ended" ? "Replay" : "Play");
  }

  function showTime(): void {
    if (!cast) return;
    timeline.value = String(position);
    setText(timeEl, `${clock(position)} / ${clock(cast.duration)}`);
  }

  /** Writes every event up to `until` (one write for the lot: a seek is instant). */
  function playUpTo(until: number): void {
    if (!cast) return;
    let out = "";
    while (next < cast.events.length && cast.events[next]!.at <= until) {
      const e = cast.events[next++]!;
      if (e.kind === "o") out += e.data;
      else if (e.kind === "r") {
        if (out) write(out);
        out = "";
        term.resize(e.cols, e.rows);
      } else {
        out += `\r\n\x1b[33m[${e.label}]\x1b[0m\r\n`;
      }
    }
    if (out) write(out);
  }

  function tick(): void {
    timer = null;
    if (!cast || !playing) return;
    position = Math.min(cast.duration, position + ((performance.now() - wallAt) / 1000) * speed);
    wallAt = performance.now();
    playUpTo(position);
    showTime();
    if (next >= cast.events.length) {
      playing = false;
      position = cast.duration;
      showTime();
      // Ended once xterm has drawn the last output (its writes are asynchronous).
      afterDrawn(() => {
        if (!playing) setState("ended");
      });
      return;
    }
    // Sleep until the next event is due (at most 100 ms, so the timeline moves smoothly).
    const wait = ((cast.events[next]!.at - position) / speed) * 1000;
    timer = setTimeout(tick, Math.max(0, Math.min(100, wait)));
  }

  function play(): void {
    if (!cast) return;
    if (state === "ended") seek(0);
    playing = true;
    wallAt = performance.now();
    setState("playing");
    if (!timer) tick();
  }

  function pause(): void {
    playing = false;
    if (timer) clearTimeout(timer);
    timer = null;
    setState("paused");
  }

  /** Rebuilds the screen at `t`: from the start, everything up to it at once. */
  function seek(t: number): void {
    if (!cast) return;
    term.reset();
    term.resize(cast.width, cast.height);
    next = 0;
    // The timeline's value comes back from the browser rounded (2.9386890000000006 reads 2.938689):
    // the end of the timeline is the end of the recording, its last events included.
    position = t >= Number(timeline.max) - 1e-6 ? cast.duration : Math.max(0, Math.min(cast.duration, t));
    playUpTo(position);
    wallAt = performance.now();
    showTime();
    if (!playing) {
      const ended = next >= cast.events.length;
      afterDrawn(() => {
        if (!playing) setState(ended ? "ended" : "paused");
      });
    }
  }

  playBtn.addEventListener("click", () => (playing ? pause() : play()));
  for (const b of speedBtns) {
    b.addEventListener("click", () => {
      // Time played so far at the old speed is counted before the new one applies.
      if (playing) position += ((performance.now() - wallAt) / 1000) * speed;
      wallAt = performance.now();
      speed = Number(b.dataset.speed);
      for (const o of speedBtns) o.setAttribute("aria-pressed", String(o === b));
    });
  }
  timeline.addEventListener("input", () => seek(Number(timeline.value)));

  async function load(): Promise<void> {
    try {
      const text = await api.recording(workspace.id, sessionId);
      cast = parseCast(text);
      blobUrl = URL.createObjectURL(new Blob([text], { type: "application/x-asciicast" }));
      download.href = blobUrl;
      download.hidden = false;
      timeline.max = String(cast.duration);
      term.resize(cast.width, cast.height);
      playBtn.disabled = false;
      setText(status, `${cast.events.length} events, ${clock(cast.duration)} (pauses over 2 s shortened)`);
      showTime();
      setState("ready");
      play();
    } catch (err) {
      setState("failed");
      setText(status, `Could not load the recording: ${(err as Error).message}`);
    }
  }

  const unregister = registerTerminal({
    workspaceId: workspace.id,
    title,
    get state() {
      return state;
    },
    session: sessionId,
    get offset() {
      return next;
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
    renderer: "dom",
    get fontSize() {
      return term.options.fontSize ?? 14;
    },
    selection() {
      return term.getSelection();
    },
    get background() {
      return term.options.theme?.background ?? "";
    },
    locate() {
      return null;
    },
  });

  let opened = false;
  return {
    id: `player-${n}`,
    title,
    panel,
    activated() {
      if (opened) return;
      opened = true;
      term.open(host);
      void load();
    },
    dispose() {
      if (timer) clearTimeout(timer);
      unregister();
      if (blobUrl) URL.revokeObjectURL(blobUrl);
      term.dispose();
    },
  };
}
