/** Display helpers (pure, unit-tested). */

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  return `${h} h ${m % 60} min`;
}

/** Why an audit row's session ended, in words. */
export function formatCloseReason(reason: string | null, exitCode: number | null, exitSignal: string | null): string {
  if (reason === null) return "still open";
  if (reason === "exit") {
    if (exitSignal) return `shell exited (signal ${exitSignal})`;
    return exitCode === null ? "shell exited" : `shell exited (code ${exitCode})`;
  }
  const words: Record<string, string> = {
    client_closed: "closed by the user",
    idle_timeout: "idle timeout",
    session_expired: "maximum length reached",
    worker_lost: "worker lost",
    worker_shutdown: "worker shut down",
    workspace_deleted: "workspace removed or restarted",
    not_ready: "workspace not ready",
    no_capacity: "no capacity",
    eic_wiring_incomplete: "EIC wiring incomplete",
    orphaned: "disconnected too long",
    spawn_failed: "shell could not start",
  };
  return words[reason] ?? reason.replace(/_/g, " ");
}
