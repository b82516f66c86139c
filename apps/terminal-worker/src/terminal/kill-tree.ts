import { readdirSync, readFileSync } from "node:fs";

/** Every descendant of `root` (from /proc), deepest last; empty where /proc is not readable. */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [];
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

/**
 * Ends a shell and everything it started: SIGHUP to its process group and every
 * descendant (as a terminal hang-up would), then SIGKILL to whatever is left
 * after `graceMs` — including processes that left the group with setsid.
 */
export async function killTree(pid: number, graceMs = 300): Promise<void> {
  const tree = [pid, ...descendants(pid)];
  signal(-pid, "SIGHUP");
  for (const p of tree) signal(p, "SIGHUP");
  await new Promise((r) => setTimeout(r, graceMs));
  const later = new Set([...tree, ...descendants(pid)]);
  signal(-pid, "SIGKILL");
  for (const p of later) signal(p, "SIGKILL");
}
