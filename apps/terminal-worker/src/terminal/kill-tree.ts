import { readdirSync, readFileSync } from "node:fs";

/**
 * The process table as parent -> children, read from /proc. Sessions often end
 * together (a worker draining, many clients leaving): one scan, reused for
 * SCAN_REUSE_MS, serves them all instead of one synchronous scan per kill.
 */
const SCAN_REUSE_MS = 50;
let lastScan: { at: number; children: Map<number, number[]> } | null = null;

function processTable(): Map<number, number[]> {
  const now = performance.now();
  if (lastScan && now - lastScan.at < SCAN_REUSE_MS) return lastScan.children;
  const children = new Map<number, number[]>();
  let entries: string[] = [];
  try {
    entries = readdirSync("/proc");
  } catch {
    // No /proc: nothing to walk.
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "latin1");
      // Fields after the command name (which may hold spaces and parentheses).
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const ppid = Number(rest[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(e));
      children.set(ppid, list);
    } catch {
      // The process went away while we looked.
    }
  }
  lastScan = { at: now, children };
  return children;
}

/** Every descendant of `root` (from /proc), deepest last; empty where /proc is not readable. */
export function descendants(root: number): number[] {
  const children = processTable();
  const out: number[] = [];
  const stack = [root];
  while (stack.length) {
    const p = stack.pop()!;
    for (const c of children.get(p) ?? []) {
      out.push(c);
      stack.push(c);
    }
  }
  return out;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

function gone(pid: number): boolean {
  try {
    // A zombie is dead too; its parent reaps it.
    return readFileSync(`/proc/${pid}/stat`, "latin1").split(") ")[1]?.startsWith("Z") ?? true;
  } catch {
    return true;
  }
}

async function waitGone(pids: number[], ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  while (pids.some((p) => !gone(p)) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

/**
 * Ends a shell and everything it started, including processes that left its
 * process group with setsid or ignore SIGHUP. Descendants go first (SIGHUP, as a
 * hang-up would, then SIGKILL after `graceMs`), deepest first, while their parents
 * still live to reap them; the root last, so a sandbox (bubblewrap) can reap its
 * own namespace instead of leaving zombies to an init that may never reap them.
 */
export async function killTree(pid: number, graceMs = 300): Promise<void> {
  const first = descendants(pid).reverse();
  for (const p of first) signal(p, "SIGHUP");
  await waitGone(first, graceMs);
  const rest = [...new Set([...first, ...descendants(pid).reverse()])];
  for (const p of rest) signal(p, "SIGKILL");
  await waitGone([pid], 200);
  signal(pid, "SIGHUP");
  await waitGone([pid], 200);
  signal(-pid, "SIGKILL");
  signal(pid, "SIGKILL");
}
