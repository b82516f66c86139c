import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { lchown, lstat, mkdir, readdir, rm, stat, writeFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import { join, resolve } from "node:path";
import { isUuid, TERM_RE, type Logger } from "@molecule/shared";
import { ensureSystemLinks, sandboxArgv, systemDirArgs } from "./sandbox-argv.ts";
import { DEFAULT_SANDBOX_LIMITS, DEFAULT_UID_RANGE, runsAsRoot, type SandboxLimits } from "./local-settings.ts";
import { detectCgroups, type Cgroups } from "./sandbox-limits.ts";
import { prepareEtcTree } from "./sandbox-etc.ts";
import { prepareSandboxRoot } from "./sandbox-root.ts";
import { claimUid, releaseUid, type UidRange } from "./sandbox-uid.ts";
import { ProviderError, TerminalUnavailableError, type Provider, type ShellCommand, type TerminalContext } from "./types.ts";

export { DEFAULT_SANDBOX_LIMITS, DEFAULT_UID_RANGE, type SandboxLimits } from "./local-settings.ts";

export interface LocalProviderOptions {
  root: string;
  bwrap: "auto" | "on" | "off";
  shell: string;
  /** `none`: the sandbox has only its own loopback. `egress`: outbound through `egressWrap`. */
  network?: "none" | "egress";
  /** The egress integration point: wraps the bwrap argv (after the uid drop), e.g. in pasta. */
  egressWrap?: (bwrapArgv: string[]) => string[];
  /** Host uids of workspaces when the worker runs as root: base + a claimed slot. */
  uids?: UidRange;
  limits?: Partial<SandboxLimits>;
  log?: Logger;
  /** Artificial provisioning time (tests use it to crash a worker mid-provisioning). */
  provisionDelayMs?: number;
  /** Injectable command builder: tests may replace what the PTY runs. */
  commandFactory?: (ctx: TerminalContext, dir: string) => ShellCommand;
  /** USER of unsandboxed shells (main.ts passes the worker's own, from env.ts); default root. */
  user?: string;
}

/** The uid the availability probe drops to: any unprivileged one will do. */
const PROBE_UID = 65534;
const DROP = (uid: number) => ["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"];

let bwrapUsable: boolean | undefined;
/**
 * bubblewrap installed and allowed to make its namespaces here, run the way
 * shells run it: as root the worker drops to an unprivileged uid first, so this
 * needs unprivileged user namespaces. Probed once per process.
 */
export function bwrapAvailable(): boolean {
  if (bwrapUsable === undefined) {
    const argv = [...(runsAsRoot() ? DROP(PROBE_UID) : []), "bwrap", "--unshare-all", "--uid", "0", "--gid", "0", ...systemDirArgs(), "--proc", "/proc", "--chdir", "/", "/usr/bin/true"];
    const r = spawnSync(argv[0]!, argv.slice(1), { stdio: "ignore", timeout: 5000 });
    bwrapUsable = r.status === 0;
  }
  return bwrapUsable;
}

const BASE_ENV = { TERM: "xterm-256color", COLORTERM: "truecolor", LANG: "C.UTF-8", PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" };

/** chown -R without following links (a tenant's symlink must not redirect it): one-time migration of a dir from before. */
async function chownTree(path: string, uid: number): Promise<void> {
  const st = await lstat(path);
  await lchown(path, uid, uid);
  if (!st.isDirectory()) return;
  for (const e of await readdir(path)) await chownTree(join(path, e), uid);
}

/**
 * The default provider: a sandbox directory per workspace. Under bubblewrap
 * (docs/terminal.md "The tenant boundary") the directory is the shell's `/`,
 * system directories are read-only on top, /etc is curated, /dev minimal, every
 * namespace its own (no network but loopback), root inside is an unprivileged
 * host uid of the workspace's own, and a cgroup bounds processes, memory and CPU.
 * Without bubblewrap the shell is a plain child process of the worker.
 */
export interface LocalProvider extends Provider {
  /** Removes this sandbox root's empty cgroups (a test stack going away without destroying its workspaces). */
  sweepCgroups(): void;
}

export function createLocalProvider(o: LocalProviderOptions): LocalProvider {
  const limits: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, ...o.limits };
  const uids = o.uids ?? DEFAULT_UID_RANGE;
  const network = o.network ?? "none";
  if (network === "egress" && !o.egressWrap) throw new ProviderError("MOLECULE_SANDBOX_NETWORK=egress: egress not available (needs pasta from Debian's passt and /dev/net/tun usable by the sandbox uids: docs/deployment.md)", false);

  const dirOf = (id: string) => {
    if (!isUuid(id)) throw new ProviderError(`invalid workspace id ${JSON.stringify(id)}`, false);
    return join(o.root, id);
  };
  const useBwrap = () => {
    if (o.bwrap === "off") return false;
    const ok = bwrapAvailable();
    if (!ok && o.bwrap === "on") throw new ProviderError("MOLECULE_SANDBOX_BWRAP=on but bubblewrap is not usable", false);
    return ok;
  };

  // Set up once, on first use: the probe and the cgroup detection cost a few ms each.
  let setup: { sandboxed: boolean; dropUid: boolean; etcDir: string; etcTree: string; cgroups: Cgroups | null } | undefined;
  const ready = () => {
    if (setup) return setup;
    const sandboxed = useBwrap();
    const dropUid = sandboxed && runsAsRoot();
    let etcDir = "";
    let etcTree = "";
    let cgroups: Cgroups | null = null;
    if (sandboxed) {
      try {
        etcDir = prepareSandboxRoot(o.root, { shell: o.shell, checkTraversable: dropUid });
        etcTree = prepareEtcTree(o.root, etcDir);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new ProviderError(code ? `cannot create the sandbox directory under ${o.root}: ${code}` : (err as Error).message, false);
      }
      // cgroups need root here; a worker as a normal user gets none (logged).
      cgroups = runsAsRoot() ? detectCgroups(limits, `molecule-${createHash("sha256").update(resolve(o.root)).digest("hex").slice(0, 12)}`) : null;
      if (cgroups) cgroups.sweep((id) => existsSync(join(o.root, id)));
      const missing = cgroups ? cgroups.missing : ["the worker is not root"];
      o.log?.info({ cgroup: cgroups?.version ?? null, controllers: cgroups?.controllers ?? [], limits, network, uid_drop: dropUid }, "local sandbox");
      if (missing.length) o.log?.warn({ missing }, "local sandbox: no cgroup limit for some of processes, memory, CPU");
    }
    setup = { sandboxed, dropUid, etcDir, etcTree, cgroups };
    return setup;
  };

  /**
   * Workspaces whose sandbox this process has set up (uid known, /bin links made), with their uid:
   * a later open of one needs a single system call (HOME's mkdir), not a stat first.
   */
  const prepared = new Map<string, number | null>();

  /** The sandbox's HOME (`root/`), made again when missing and given to the workspace's uid; ENOENT (no sandbox) throws `gone()`. */
  async function ensureHome(dir: string, uid: number | null, gone: () => Error): Promise<void> {
    try {
      await mkdir(join(dir, "root"), { mode: 0o700 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EEXIST") return;
      throw code === "ENOENT" ? gone() : err;
    }
    if (uid !== null) await lchown(join(dir, "root"), uid, uid);
  }

  /** A workspace's uid: its dir's owner when claimed; else (a dir from before per-workspace uids) claim one now. */
  async function workspaceUid(id: string, dir: string, owner: number): Promise<number> {
    if (owner >= uids.base && owner < uids.base + uids.count) return owner;
    const uid = await claimUid(o.root, id, uids);
    await chownTree(dir, uid);
    return uid;
  }

  function bwrapCommand(ctx: TerminalContext, dir: string, uid: number | null): ShellCommand {
    const s = ready();
    const hostname = `ws-${ctx.workspaceId.slice(0, 12)}`;
    const shared = { ...BASE_ENV, MOLECULE_WS_ID: ctx.workspaceId, HOME: "/root", USER: "root", SHELL: o.shell, HOSTNAME: hostname };
    const env = { ...shared, ...(ctx.term ? { TERM: ctx.term } : {}), MOLECULE_SESSION_ID: ctx.sessionId };
    const sandbox = {
      dir,
      hostname,
      shell: o.shell,
      uid,
      cgroupProcs: s.cgroups ? s.cgroups.procsFor(ctx.workspaceId) : [],
      // RLIMIT_NPROC counts every process of the real uid: only meaningful with a uid of the workspace's own.
      nproc: uid !== null ? limits.pids : null,
      fileSizeBytes: limits.fileSizeBytes,
      etcDir: s.etcDir,
      etcTree: s.etcTree,
      network,
      wrap: o.egressWrap,
    };
    const argv = sandboxArgv({ ...sandbox, env, ...(ctx.command ? { command: ctx.command } : {}) });
    const cmd: ShellCommand = { file: argv[0]!, args: argv.slice(1), env, cwd: dir };
    if (ctx.command || !isUuid(ctx.sessionId) || !TERM_RE.test(env.TERM)) return cmd;
    // The same shell from a spare that waits at its gate (spare-shells.ts): every session of
    // the workspace shares the template, so its argv is the pool's key.
    const tpl = sandboxArgv({ ...sandbox, env: shared, gate: true });
    const key = `${ctx.workspaceId}:${createHash("sha256").update(JSON.stringify([tpl, dir])).digest("hex").slice(0, 16)}`;
    const release = `${ctx.sessionId} ${env.TERM}\n`;
    return { ...cmd, spare: { key, template: { file: tpl[0]!, args: tpl.slice(1), env: shared, cwd: dir }, release } };
  }

  return {
    name: "local",
    // Only idempotent preparation (the home dir, the /bin links, a uid for a dir from before).
    commandBeforeClaim: true,
    sweepCgroups() {
      setup?.cgroups?.sweep(() => false);
    },
    async create(workspace, ctx) {
      ctx.step?.("creating_sandbox");
      const dir = dirOf(workspace.id);
      const s = ready();
      try {
        await mkdir(dir, { recursive: true, mode: 0o700 });
        if (o.provisionDelayMs) await new Promise((r) => setTimeout(r, o.provisionDelayMs));
        // O_EXCL: a re-run create must not follow a link the tenant put there (the worker is root).
        await writeFile(join(dir, ".molecule-workspace"), `${workspace.id}\n`, { flag: "wx" }).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== "EEXIST") throw err;
        });
        // The sandbox's HOME (/root inside: the workspace dir is the sandbox's /).
        await mkdir(join(dir, "root"), { recursive: true, mode: 0o700 });
        if (s.dropUid) {
          const uid = await claimUid(o.root, workspace.id, uids);
          for (const p of [dir, join(dir, "root"), join(dir, ".molecule-workspace")]) await lchown(p, uid, uid);
        }
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const transient = code === "EBUSY" || code === "EAGAIN" || code === "EMFILE";
        throw new ProviderError(`cannot create the sandbox directory under ${o.root}: ${code ?? String(err)}`, transient);
      }
      return { instanceId: null };
    },
    async destroy(workspace) {
      const dir = dirOf(workspace.id);
      const s = ready();
      const owner = await stat(dir).then((st) => st.uid, () => null);
      // Whatever still runs in the workspace goes with it.
      prepared.delete(workspace.id);
      await s.cgroups?.remove(workspace.id);
      await rm(dir, { recursive: true, force: true });
      if (s.dropUid) await releaseUid(o.root, workspace.id, owner, uids);
    },
    async terminalCommand(ctx) {
      const dir = dirOf(ctx.workspaceId);
      const gone = () => new TerminalUnavailableError("not_ready", "the workspace sandbox does not exist (removed?)");
      const s = ready();
      const known = o.commandFactory || !s.sandboxed ? undefined : prepared.get(ctx.workspaceId);
      if (known !== undefined) {
        // Set up before in this process: HOME again (a tenant may have removed it) is the one system
        // call; its ENOENT says the sandbox itself is gone (destroyed here or by another worker).
        await ensureHome(dir, known, gone);
        return bwrapCommand(ctx, dir, known);
      }
      const st = await stat(dir).catch(() => null);
      if (!st?.isDirectory()) throw gone();
      if (o.commandFactory) return o.commandFactory(ctx, dir);
      if (!s.sandboxed) {
        const env = { ...BASE_ENV, ...(ctx.term ? { TERM: ctx.term } : {}), MOLECULE_WS_ID: ctx.workspaceId, MOLECULE_SESSION_ID: ctx.sessionId };
        const [file, ...args] = ctx.command ?? [o.shell, "--login"];
        return { file: file ?? o.shell, args, env: { ...env, HOME: dir, SHELL: o.shell, USER: o.user ?? "root" }, cwd: dir };
      }
      const uid = s.dropUid ? await workspaceUid(ctx.workspaceId, dir, st.uid) : null;
      // HOME must exist for --chdir (a workspace from before, or a tenant who removed it); the /bin
      // links once per workspace and process (bwrap makes the ones a tenant removed).
      await Promise.all([ensureHome(dir, uid, gone), ensureSystemLinks(dir, uid)]);
      prepared.set(ctx.workspaceId, uid);
      return bwrapCommand(ctx, dir, uid);
    },
  };
}
