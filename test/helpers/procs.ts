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

/** A process's command line, arguments joined by spaces ("" once it is gone). */
export function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "latin1").replace(/\0/g, " ").trim();
  } catch {
    return "";
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

/** Socket inode -> remote TCP port, for every TCP socket on the machine. */
function tcpPeers(): Map<string, number> {
  const out = new Map<string, number>();
  for (const f of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let lines: string[];
    try {
      lines = readFileSync(f, "latin1").split("\n").slice(1);
    } catch {
      continue;
    }
    for (const l of lines) {
      const cols = l.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const remotePort = parseInt(cols[2]!.split(":")[1]!, 16);
      out.set(cols[9]!, remotePort);
    }
  }
  return out;
}

/**
 * Open descriptors of a process, leaving out connections to PostgreSQL (a pool
 * that grows under load and shrinks when idle is not a leak).
 */
export function fdsExceptDbPool(pid: number, dbPort = 5432): string[] {
  const peers = tcpPeers();
  return openFds(pid).filter((f) => {
    const m = /^socket:\[(\d+)\]$/.exec(f);
    return !(m && peers.get(m[1]!) === dbPort);
  });
}

/** Host pids whose environment says they are shells of session `sid`. */
export function hostPidsOfSession(sid: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/environ`, "latin1").split("\0").includes(`MOLECULE_SESSION_ID=${sid}`)) out.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}
export function statusField(pid: number, field: string): string {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith(`${field}:`));
  return (line ?? "").slice(field.length + 1).trim();
}
/** Host processes running as `uid`. */
export function processesOf(uid: number): number {
  let n = 0;
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (statusField(Number(e), "Uid").split(/\s+/)[0] === String(uid)) n++;
    } catch {
      // gone meanwhile
    }
  }
  return n;
}
