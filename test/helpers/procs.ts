import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/** Running (not a zombie, which is already dead and waits only for its parent or init to reap it). */
export function processAlive(pid: number): boolean {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, "latin1");
    return !st.slice(st.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return false;
  }
}

/** Live processes whose command line contains `needle`. */
export function processesMatching(needle: string): { pid: number; cmd: string }[] {
  const out: { pid: number; cmd: string }[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, "latin1").replace(/\0/g, " ").trim();
      if (cmd.includes(needle) && processAlive(Number(e))) out.push({ pid: Number(e), cmd });
    } catch {
      // gone
    }
  }
  return out;
}

/** Open file descriptors of this process, by kind (ptmx, socket, file...). */
export function openFds(pid = process.pid): string[] {
  const out: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      out.push(readlinkSync(`/proc/${pid}/fd/${fd}`));
    } catch {
      // closed meanwhile
    }
  }
  return out;
}
