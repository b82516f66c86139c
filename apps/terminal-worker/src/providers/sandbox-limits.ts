import { accessSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * One cgroup per workspace (shared by its sessions) for processes, memory and CPU
 * share: cgroup v1 where the controllers are mounted separately (these machines),
 * v2 (unified) elsewhere. Created under the worker's own cgroup, so an outer limit
 * (a container's) still applies. Without a writable hierarchy there are no such
 * limits; `missing` says why, for the start-up log.
 */
export interface CgroupLimits {
  pids: number;
  memoryBytes: number;
  /** v1 cpu.shares scale (1024 = one default share); v2 cpu.weight is derived. */
  cpuShares: number;
}

interface Controller {
  name: "pids" | "memory" | "cpu";
  /** `<mount><own path>/<group>`: the workspaces' parent. */
  base: string;
  apply(dir: string, l: CgroupLimits): void;
}

export interface Cgroups {
  version: "v1" | "v2" | null;
  controllers: string[];
  /** Why a controller is missing (for the start-up log); empty when all are there. */
  missing: string[];
  /** Creates the workspace's cgroups, writes the limits, returns the cgroup.procs files to join. */
  procsFor(workspaceId: string): string[];
  /** Kills what is left in the workspace's cgroups and removes them. */
  remove(workspaceId: string): Promise<void>;
  /** Removes cgroups of workspaces `keep` rejects, when empty, and the parent once it is empty. */
  sweep(keep: (workspaceId: string) => boolean): void;
}

const write = (path: string, value: string | number) => writeFileSync(path, String(value));
const writeTry = (path: string, value: string | number) => {
  try {
    write(path, value);
  } catch {
    // Optional knob (e.g. memsw without swap accounting): the main limit still holds.
  }
};

function ownPaths(): Map<string, string> {
  const m = new Map<string, string>();
  let text = "";
  try {
    text = readFileSync("/proc/self/cgroup", "utf8");
  } catch {
    return m;
  }
  for (const line of text.split("\n")) {
    const [, ctrls, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (ctrls === undefined || path === undefined) continue;
    for (const c of ctrls === "" ? [""] : ctrls.split(",")) m.set(c, path);
  }
  return m;
}

function writable(dir: string): boolean {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * `group` names the parent of this deployment's workspace cgroups (one per sandbox
 * root: a sweep never touches another root's, whose dirs it cannot see).
 */
export function detectCgroups(limits: CgroupLimits, group: string, fsRoot = "/sys/fs/cgroup"): Cgroups {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(group)) throw new Error(`bad cgroup name ${JSON.stringify(group)}`);
  const own = ownPaths();
  const controllers: Controller[] = [];
  const missing: string[] = [];
  let version: Cgroups["version"] = null;
  const v1: Record<Controller["name"], { file: string; apply: Controller["apply"] }> = {
    pids: { file: "pids.max", apply: (d, l) => write(join(d, "pids.max"), l.pids) },
    memory: {
      file: "memory.limit_in_bytes",
      apply: (d, l) => {
        write(join(d, "memory.limit_in_bytes"), l.memoryBytes);
        writeTry(join(d, "memory.memsw.limit_in_bytes"), l.memoryBytes);
      },
    },
    cpu: { file: "cpu.shares", apply: (d, l) => write(join(d, "cpu.shares"), l.cpuShares) },
  };
  const anyV1 = [...own.keys()].some((k) => k in v1);
  if (anyV1) {
    version = "v1";
    for (const name of ["pids", "memory", "cpu"] as const) {
      const path = own.get(name);
      const mount = join(fsRoot, name);
      const base = join(mount, path ?? "/", group);
      // The limit file is looked for in our own group: a root cgroup has none (v1 pids has no pids.max there).
      if (path === undefined || !existsSync(join(mount, "cgroup.procs"))) missing.push(`${name}: controller not mounted`);
      else if (!writable(base)) missing.push(`${name}: ${base} not writable`);
      else if (!existsSync(join(base, v1[name].file))) missing.push(`${name}: no ${v1[name].file} in ${base}`);
      else controllers.push({ name, base, apply: v1[name].apply });
    }
  } else if (existsSync(join(fsRoot, "cgroup.controllers")) && own.has("")) {
    version = "v2";
    const parent = join(fsRoot, own.get("") ?? "/");
    const base = join(parent, group);
    // Children may use a controller only when every ancestor delegates it.
    const enable = () => {
      for (const d of [parent, base]) writeTry(join(d, "cgroup.subtree_control"), "+pids +memory +cpu");
    };
    if (!writable(base)) missing.push(`${base} not writable`);
    else {
      enable();
      const have = readFileSync(join(base, "cgroup.subtree_control"), "utf8").split(/\s+/);
      const v2: Record<Controller["name"], Controller["apply"]> = {
        pids: (d, l) => write(join(d, "pids.max"), l.pids),
        memory: (d, l) => {
          write(join(d, "memory.max"), l.memoryBytes);
          writeTry(join(d, "memory.swap.max"), 0);
        },
        cpu: (d, l) => write(join(d, "cpu.weight"), Math.max(1, Math.min(10_000, Math.round((l.cpuShares * 100) / 1024)))),
      };
      for (const name of ["pids", "memory", "cpu"] as const) {
        if (have.includes(name)) controllers.push({ name, base, apply: v2[name] });
        else missing.push(`${name}: not delegated to ${base}`);
      }
    }
  } else missing.push("no cgroup hierarchy");

  // v2 has one directory for all controllers; v1 one per controller.
  const dirs = (id: string) => [...new Set(controllers.map((c) => join(c.base, id)))];
  const applied = new Set<string>();
  return {
    version: controllers.length ? version : null,
    controllers: controllers.map((c) => c.name),
    missing,
    procsFor(id) {
      const ds = dirs(id);
      // Made and limited once per workspace and process (a stat per open after that): the limits are
      // this process's own settings, and only destroy (or a sweep of an empty one) removes the dirs.
      if (!applied.has(id) || !ds.every((d) => existsSync(d))) {
        for (const c of controllers) {
          const d = join(c.base, id);
          mkdirSync(d, { recursive: true });
          c.apply(d, limits);
        }
        applied.add(id);
      }
      return ds.map((d) => join(d, "cgroup.procs"));
    },
    async remove(id) {
      applied.delete(id);
      for (const d of dirs(id)) {
        for (let i = 0; i < 50 && existsSync(d); i++) {
          try {
            for (const p of readFileSync(join(d, "cgroup.procs"), "utf8").split("\n").filter(Boolean)) {
              try {
                process.kill(Number(p), "SIGKILL");
              } catch {
                // exited meanwhile
              }
            }
            rmdirSync(d);
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            if (code === "ENOENT") break;
            if (code !== "EBUSY") throw err;
            await new Promise((r) => setTimeout(r, 20)); // killed processes take a moment to leave
          }
        }
      }
    },
    sweep(keep) {
      for (const c of controllers) {
        let names: string[] = [];
        try {
          names = readdirSync(c.base, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
        } catch {
          continue; // base vanished: nothing to sweep
        }
        for (const n of names) {
          if (keep(n)) continue;
          try {
            rmdirSync(join(c.base, n));
          } catch {
            // Still has processes: left for destroy or the next start.
          }
        }
        try {
          rmdirSync(c.base);
        } catch {
          // Workspaces left: kept (procsFor recreates it when needed).
        }
      }
    },
  };
}
