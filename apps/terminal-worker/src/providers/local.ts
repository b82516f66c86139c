import { spawnSync } from "node:child_process";
import { mkdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { isUuid } from "@molecule/shared";
import { ProviderError, TerminalUnavailableError, type Provider, type ShellCommand, type TerminalContext, type WorkspaceRow } from "./types.ts";

export interface LocalProviderOptions {
  root: string;
  bwrap: "auto" | "on" | "off";
  shell: string;
  /** Artificial provisioning time (tests use it to crash a worker mid-provisioning). */
  provisionDelayMs?: number;
  /** Injectable command builder: tests may replace what the PTY runs. */
  commandFactory?: (ctx: TerminalContext, dir: string) => ShellCommand;
}

let bwrapUsable: boolean | undefined;
/** bubblewrap installed and allowed to make a user namespace here. */
export function bwrapAvailable(): boolean {
  if (bwrapUsable === undefined) {
    const r = spawnSync("bwrap", ["--unshare-user", "--uid", "0", "--gid", "0", "--ro-bind", "/", "/", "true"], { stdio: "ignore", timeout: 5000 });
    bwrapUsable = r.status === 0;
  }
  return bwrapUsable;
}

const BASE_ENV = { TERM: "xterm-256color", COLORTERM: "truecolor", LANG: "C.UTF-8", PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" };

/**
 * The default provider: a sandbox directory per workspace. The shell runs under
 * bubblewrap when available (own user and PID namespaces: `whoami` is root, the
 * sandbox is root's home, everything else read-only), else as a plain child process.
 */
export function createLocalProvider(o: LocalProviderOptions): Provider {
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

  function defaultCommand(ctx: TerminalContext, dir: string): ShellCommand {
    const env = { ...BASE_ENV, MOLECULE_WS_ID: ctx.workspaceId, MOLECULE_SESSION_ID: ctx.sessionId };
    if (!useBwrap()) {
      return { file: o.shell, args: ["--login"], env: { ...env, HOME: dir, SHELL: o.shell, USER: process.env.USER ?? "root" }, cwd: dir };
    }
    const hostname = `ws-${ctx.workspaceId.slice(0, 12)}`;
    const args = [
      "--unshare-user", "--uid", "0", "--gid", "0",
      "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", hostname,
      "--die-with-parent",
      "--ro-bind", "/", "/",
      "--dev-bind", "/dev", "/dev",
      "--proc", "/proc",
      "--tmpfs", "/tmp",
      "--bind", dir, "/root",
      "--chdir", "/root",
      "--clearenv",
    ];
    const full = { ...env, HOME: "/root", USER: "root", SHELL: o.shell, HOSTNAME: hostname };
    for (const [k, v] of Object.entries(full)) args.push("--setenv", k, v);
    args.push(o.shell, "--login");
    return { file: "bwrap", args, env: full, cwd: dir };
  }

  return {
    name: "local",
    async create(ws) {
      const dir = dirOf(ws.id);
      try {
        await mkdir(dir, { recursive: true, mode: 0o700 });
        if (o.provisionDelayMs) await new Promise((r) => setTimeout(r, o.provisionDelayMs));
        await writeFile(join(dir, ".molecule-workspace"), `${ws.id}\n`);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const transient = code === "EBUSY" || code === "EAGAIN" || code === "EMFILE";
        throw new ProviderError(`cannot create the sandbox directory under ${o.root}: ${code ?? String(err)}`, transient);
      }
      return { instanceId: null };
    },
    async destroy(ws) {
      await rm(dirOf(ws.id), { recursive: true, force: true });
    },
    async terminalCommand(ctx) {
      const dir = dirOf(ctx.workspaceId);
      const exists = await stat(dir).then((s) => s.isDirectory(), () => false);
      if (!exists) throw new TerminalUnavailableError("not_ready", "the workspace sandbox does not exist (removed?)");
      return (o.commandFactory ?? defaultCommand)(ctx, dir);
    },
  };
}
