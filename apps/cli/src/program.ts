import { Command, CommanderError, Option } from "commander";
import { Context, type GlobalFlags } from "./context.ts";
import { loadCliEnv } from "./env.ts";
import { CliError, EXIT } from "./errors.ts";
import { cliVersion } from "./version.ts";

const HELP_AFTER = `
Exit codes: 0 ok, 1 error (the API's code and message are shown), 2 usage, 130 interrupted;
ssh and exec exit with the remote command's code.
Environment: MOLECULE_TOKEN, MOLECULE_API, MOLECULE_PROFILE override the profile;
profiles live in $XDG_CONFIG_HOME/molecule/config.json (mode 0600).
Docs: docs/cli.md`;

/** Parses argv, runs one command, and resolves with the exit code; never throws. */
export async function run(argv: string[]): Promise<number> {
  const env = loadCliEnv();
  const version = cliVersion();
  let code: number = EXIT.ok;
  let ctx: Context | null = null;
  const program = new Command("molecule");
  const context = (cmd: Command): Context => {
    ctx = new Context(env, cmd.optsWithGlobals<GlobalFlags>(), version);
    return ctx;
  };

  program
    .description("Molecule workspaces from any terminal: log in, create, ssh, exec, cp")
    .version(version, "-V, --version")
    .option("--profile <name>", "the profile to use (default: the current one)")
    .option("--api <url>", "the API URL (overrides the profile's)")
    .option("--json", "machine-readable output on stdout")
    .showHelpAfterError("(molecule --help lists the commands)")
    .addHelpText("after", HELP_AFTER)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  const lazy =
    <T extends unknown[]>(f: (ctx: Context, ...a: T) => Promise<number> | number) =>
    async (...a: unknown[]) => {
      const cmd = a[a.length - 1] as Command;
      const positional = a.slice(0, -2) as T;
      code = await f(context(cmd), ...positional);
    };
  const opts = (a: unknown[]) => a[a.length - 2] as Record<string, unknown>;

  program
    .command("login")
    .description("store a token for an API (from MOLECULE_TOKEN, stdin, or a prompt)")
    .option("--with-token", "read the token from stdin")
    .action(async (...a: unknown[]) => {
      const { login } = await import("./commands/auth.ts");
      code = await login(context(a[a.length - 1] as Command), opts(a));
    });
  program
    .command("logout")
    .description("forget the profile's token")
    .option("--all", "every profile")
    .action(async (...a: unknown[]) => {
      const { logout } = await import("./commands/auth.ts");
      code = logout(context(a[a.length - 1] as Command), opts(a));
    });
  program
    .command("whoami")
    .description("the profile, API and token in use, checked against the API")
    .action(
      lazy(async (c) => {
        const { whoami } = await import("./commands/auth.ts");
        return whoami(c);
      }),
    );
  const profiles = program.command("profiles").description("named profiles, one per deployment");
  profiles
    .command("list", { isDefault: true })
    .description("list the profiles (* marks the current one)")
    .action(
      lazy(async (c) => {
        const { listProfiles } = await import("./commands/auth.ts");
        return listProfiles(c);
      }),
    );
  profiles
    .command("use <name>")
    .description("make a profile the current one")
    .action(
      lazy(async (c, name: string) => {
        const { useProfile } = await import("./commands/auth.ts");
        return useProfile(c, name);
      }),
    );

  const ws = program.command("workspaces").alias("ws").description("list, create, inspect, restart and remove workspaces");
  ws.command("list", { isDefault: true })
    .alias("ls")
    .description("the organisation's workspaces, newest first")
    .addOption(new Option("--status <status>", "only workspaces in this status"))
    .action(async (...a: unknown[]) => {
      const { listWorkspaces } = await import("./commands/workspaces.ts");
      code = await listWorkspaces(context(a[a.length - 1] as Command), opts(a));
    });
  ws.command("create <name>")
    .description("create a workspace")
    .option("--runtime <runtime>", "hermes, langgraph (default), claude-code, crewai, autogen, deepagents, gemini-cli, openclaw")
    .option("--tier <n>", "1..4 (default 2)")
    .option("--wait", "show the provisioning steps and return once it is ready")
    .option("--timeout <seconds>", "with --wait: give up after this long (default 600)")
    .action(async (name: string, ...a: unknown[]) => {
      const { createWorkspace } = await import("./commands/workspaces.ts");
      code = await createWorkspace(context(a[a.length - 1] as Command), name, opts(a));
    });
  ws.command("get <workspace>")
    .description("one workspace, by id or name")
    .action(
      lazy(async (c, ref: string) => {
        const { getWorkspace } = await import("./commands/workspaces.ts");
        return getWorkspace(c, ref);
      }),
    );
  ws.command("restart <workspace>")
    .description("re-provision a ready or failed workspace")
    .option("--wait", "return once it is ready again")
    .option("--timeout <seconds>", "with --wait: give up after this long (default 600)")
    .action(async (ref: string, ...a: unknown[]) => {
      const { restartWorkspace } = await import("./commands/workspaces.ts");
      code = await restartWorkspace(context(a[a.length - 1] as Command), ref, opts(a));
    });
  ws.command("rm <workspace...>")
    .alias("remove")
    .description("remove workspaces (their shells end, their resources are destroyed)")
    .action(async (refs: string[], ...a: unknown[]) => {
      const { removeWorkspace } = await import("./commands/workspaces.ts");
      code = await removeWorkspace(context(a[a.length - 1] as Command), refs);
    });

  program
    .command("ssh <workspace>")
    .description("a shell in the workspace, in this terminal (~. disconnects, ~? lists the escapes)")
    .option("-e, --escape-char <char>", "the escape character, or 'none' (default ~)")
    .option("--reconnect-timeout <seconds>", "how long to try re-attaching after a drop (default 60)")
    .action(async (ref: string, ...a: unknown[]) => {
      const { ssh } = await import("./commands/ssh.ts");
      code = await ssh(context(a[a.length - 1] as Command), ref, opts(a));
    });

  program
    .command("exec <workspace> [command...]")
    .description("run one command (an argv): molecule exec <ws> -- <command> [args…]; its exit code is ours")
    .option("-t, --tty", "in a PTY even without a terminal here")
    .option("-T, --no-tty", "with pipes (stdin, stdout, stderr apart, binary-safe) even on a terminal")
    .option("--reconnect-timeout <seconds>", "how long to try re-attaching after a drop (default 60)")
    .action(async (ref: string, command: string[], ...a: unknown[]) => {
      const { exec } = await import("./commands/exec.ts");
      const o = opts(a) as { tty?: boolean; reconnectTimeout?: string };
      // commander's --no-tty sets tty=false; no flag leaves it undefined (decided by the terminals).
      code = await exec(context(a[a.length - 1] as Command), ref, command, { tty: o.tty === true, noTty: o.tty === false, reconnectTimeout: o.reconnectTimeout });
    });
  program
    .command("cp <source> <destination>")
    .description("copy files or directories (modes kept): cp <path> <ws>:<path> | cp <ws>:<path> <path>")
    .option("--reconnect-timeout <seconds>", "how long to try re-attaching after a drop (default 60)")
    .action(async (src: string, dest: string, ...a: unknown[]) => {
      const { cp } = await import("./commands/cp.ts");
      code = await cp(context(a[a.length - 1] as Command), src, dest, opts(a));
    });

  program
    .command("sessions <workspace>")
    .description("the workspace's terminal sessions (audit), newest first")
    .option("--limit <n>", "how many (default 50)")
    .action(async (ref: string, ...a: unknown[]) => {
      const { listSessions } = await import("./commands/sessions.ts");
      code = await listSessions(context(a[a.length - 1] as Command), ref, opts(a));
    });

  program
    .command("play <session>")
    .description("replay a session's recording in this terminal, with its timing (pauses over 2 s shortened)")
    .option("-w, --workspace <workspace>", "the session's workspace (default: searched)")
    .option("--speed <n>", "playback speed (default 1)")
    .option("--raw", "print the .cast file (asciicast v2) instead")
    .action(async (session: string, ...a: unknown[]) => {
      const { play } = await import("./commands/recording.ts");
      code = await play(context(a[a.length - 1] as Command), session, opts(a));
    });
  program
    .command("watch <session>")
    .description("watch a live session read-only (its controller keeps typing; Ctrl-C stops watching)")
    .option("-w, --workspace <workspace>", "the session's workspace (default: searched)")
    .action(async (session: string, ...a: unknown[]) => {
      const { watch } = await import("./commands/recording.ts");
      code = await watch(context(a[a.length - 1] as Command), session, opts(a));
    });

  program
    .command("completion <shell>")
    .description('shell completion: eval "$(molecule completion bash)" (or zsh)')
    .action(async (shell: string) => {
      const { completion } = await import("./commands/completion.ts");
      code = completion(shell);
    });
  program
    .command("__complete <what>", { hidden: true })
    .action(async (what: string, ...a: unknown[]) => {
      const { completeWorkspaces } = await import("./commands/completion.ts");
      code = what === "workspaces" ? await completeWorkspaces(context(a[a.length - 1] as Command)) : EXIT.ok;
    });

  program
    .command("admin")
    .description("server-side admin (orgs, tokens; needs the database): only from a checkout, pnpm molecule admin --help")
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument("[args...]")
    .action(async (args: string[]) => {
      const { admin } = await import("./commands/admin.ts");
      code = await admin(args);
    });

  // The admin tool's old spelling (`pnpm molecule org create …`) keeps working from a checkout.
  for (const name of ["org", "token"]) {
    program
      .command(name, { hidden: true })
      .helpOption(false)
      .allowUnknownOption()
      .allowExcessArguments()
      .argument("[args...]")
      .action(async (args: string[]) => {
        const { admin } = await import("./commands/admin.ts");
        code = await admin([name, ...args]);
      });
  }

  // Ctrl-C outside a raw terminal (create --wait, a slow list, exec with pipes, cp): 130, the
  // cursor line cleaned up, a remote command's session closed first (at most a second; a second
  // Ctrl-C does not wait).
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(EXIT.interrupted);
    interrupted = true;
    if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
    process.stderr.write("interrupted\n");
    void (ctx?.interrupt(1000) ?? Promise.resolve()).finally(() => process.exit(EXIT.interrupted));
  };
  process.on("SIGINT", onSigint);
  try {
    await program.parseAsync(argv, { from: "user" });
    return interrupted ? EXIT.interrupted : code;
  } catch (err) {
    // What the interrupt ended fails on its way out: that is not news.
    if (interrupted) return EXIT.interrupted;
    if (err instanceof CommanderError) {
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help") return EXIT.ok;
      return EXIT.usage;
    }
    return report(err, (ctx as Context | null)?.json ?? argv.includes("--json"));
  } finally {
    process.off("SIGINT", onSigint);
  }
}

const SYSTEM_ERRORS: Record<string, string> = {
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOSPC: "no space left on the device",
  EEXIST: "already exists",
  ENOTDIR: "not a directory",
  EISDIR: "is a directory",
  EROFS: "read-only file system",
  EXDEV: "on another file system",
};

function report(err: unknown, json: boolean): number {
  if (err instanceof CliError) {
    if (json) process.stderr.write(`${JSON.stringify({ error: { code: err.code, message: err.message, details: err.details } })}\n`);
    else process.stderr.write(`error: ${err.message}${err.code !== "error" && err.code !== "usage" ? ` (${err.code})` : ""}\n`);
    return err.exitCode;
  }
  // A file the command could not read or write (ENOENT, EACCES, ENOSPC …): the path and why, no stack.
  const sys = err as NodeJS.ErrnoException;
  if (typeof sys?.code === "string" && typeof sys.syscall === "string") {
    const what = sys.path ?? sys.syscall;
    if (json) process.stderr.write(`${JSON.stringify({ error: { code: sys.code, message: sys.message, details: { path: sys.path ?? null } } })}\n`);
    else process.stderr.write(`error: ${what}: ${SYSTEM_ERRORS[sys.code] ?? sys.message} (${sys.code})\n`);
    return EXIT.error;
  }
  process.stderr.write(`error: ${(err as Error)?.stack ?? String(err)}\n`);
  return EXIT.error;
}
