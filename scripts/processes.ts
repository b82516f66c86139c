import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { ensureBuilt, SERVER_ENTRIES, type ServerEntry } from "./build.ts";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** The sources of the mains; startNode runs their compiled build (scripts/build.ts). */
export const API_MAIN = join(ROOT, SERVER_ENTRIES.api);
export const WORKER_MAIN = join(ROOT, SERVER_ENTRIES.worker);
export const BARE_BRIDGE_MAIN = join(ROOT, SERVER_ENTRIES["bare-bridge"]);

const compiledNames = new Map(Object.entries(SERVER_ENTRIES).map(([name, src]) => [join(ROOT, src), name as ServerEntry]));

/**
 * How `entry` runs: an entry scripts/build.ts compiles runs as plain JavaScript
 * from the current build (built first when its sources changed), so launchers,
 * tests and the benchmark run what production runs; `watch` (./start --watch)
 * runs the sources under tsx, restarted on every change; anything else under tsx.
 */
export function nodeArgs(entry: string, o: { watch?: boolean } = {}): string[] {
  const name = compiledNames.get(entry);
  if (o.watch) return ["--watch", "--import", "tsx", entry];
  if (name) {
    const file = ensureBuilt().files[name];
    if (!file) throw new Error(`${entry} is not in this checkout's build`);
    return [file];
  }
  return ["--import", "tsx", entry];
}

/** Whoever started them (a launcher, a test) going away must not leave them running. */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of running) c.kill("SIGKILL");
});

export interface Proc {
  name: string;
  child: ChildProcess;
  /** Resolves with the first JSON line the process prints with `event` (listening / ready). */
  ready: Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

/**
 * Starts an entry point (see nodeArgs: the mains compiled). JSON event lines on
 * stdout are parsed; everything (pino logs included) goes to `logFile` when given.
 */
export function startNode(name: string, entry: string, env: NodeJS.ProcessEnv, logFile?: string, o: { watch?: boolean } = {}): Proc {
  const child = spawn(process.execPath, nodeArgs(entry, o), {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log: NodeJS.WritableStream | null = null;
  if (logFile) {
    mkdirSync(dirname(logFile), { recursive: true });
    log = createWriteStream(logFile, { flags: "a" });
  }
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  running.add(child);
  void exited.then(() => running.delete(child));
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      log?.write(`${line}\n`);
      if (line.startsWith('{"event"')) {
        try {
          resolve(JSON.parse(line));
        } catch {
          // not ours
        }
      }
    });
    // The last output, so a process that dies before it is ready says why.
    let tail = "";
    const keep = (b: Buffer | string) => (tail = (tail + b.toString()).slice(-2000));
    child.stdout!.on("data", keep);
    child.stderr!.on("data", (b) => {
      keep(b);
      log?.write(b);
    });
    void exited.then((code) => reject(new Error(`${name} exited with ${code} before it was ready:\n${tail}`)));
  });
  ready.catch(() => {});
  return { name, child, ready, exited };
}

export async function stopProc(p: Proc, signal: NodeJS.Signals = "SIGTERM", ms = 15_000): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill(signal);
  const t = setTimeout(() => p.child.kill("SIGKILL"), ms);
  await p.exited;
  clearTimeout(t);
}
