import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { terminalQuery } from "@molecule/shared";
import { buildSshArgs, shellQuote, type SshCommandInput } from "./aws/ssh-command.ts";
import { execArgs } from "./docker.ts";
import { sandboxArgv, type SandboxArgvOptions } from "./sandbox-argv.ts";

/** Exec sessions (protocol `command`): the argv reaches each provider's command as given. */
const hostile = ["printf", "%s|", "a b", "$(id)", "'q'", "`x`", "-e", ";rm -rf /"];

describe("exec argv per provider", () => {
  const sbx: SandboxArgvOptions = { dir: "/srv/sbx/ws", hostname: "ws-1", shell: "/bin/bash", env: {}, uid: null, cgroupProcs: [], nproc: null, fileSizeBytes: null, etcDir: "/srv/.etc", network: "none" };

  it("local: bwrap runs the argv after --, in place of the login shell", () => {
    expect(sandboxArgv(sbx).slice(-2)).toEqual(["/bin/bash", "--login"]);
    const a = sandboxArgv({ ...sbx, command: hostile });
    expect(a.slice(-hostile.length - 1)).toEqual(["--", ...hostile]);
    expect(a).not.toContain("--login");
  });

  it("docker: exec -i (no -t) with the argv as docker's own arguments, TERM from the client", () => {
    const base = { workspaceId: "w", sessionId: "s", container: "ws-c", shell: "/bin/bash" };
    expect(execArgs(base).slice(0, 2)).toEqual(["exec", "-it"]);
    const a = execArgs({ ...base, command: hostile, pty: false, term: "screen" });
    expect(a.slice(0, 2)).toEqual(["exec", "-i"]);
    expect(a).toContain("TERM=screen");
    expect(a.slice(-hostile.length - 1)).toEqual(["ws-c", ...hostile]);
    expect(execArgs({ ...base, command: ["ls"], pty: true }).slice(0, 2)).toEqual(["exec", "-it"]);
  });

  it("aws: ssh -T and docker exec -i, each argument quoted so the remote shell reads it back exactly", () => {
    const input: SshCommandInput = {
      sshBin: "/usr/bin/ssh", awsCli: "aws", instanceId: "i-0123456789abcdef0", osUser: "ec2-user", container: "ws-0a1b2c3d-4e5", region: "us-east-1",
      keyFile: "/k", knownHostsFile: null, hostKeyType: null, connectTimeoutSec: 20, keepaliveSec: 15, keepaliveCount: 4, tunnelMaxSec: 3600, extraOptions: [],
    };
    const a = buildSshArgs({ ...input, command: hostile, pty: false });
    expect(a[0]).toBe("-T");
    const tail = a.slice(a.indexOf("docker"));
    expect(tail.slice(0, 4)).toEqual(["docker", "exec", "-i", "ws-0a1b2c3d-4e5"]);
    // What ssh sends is these words joined by spaces; a POSIX shell parses them back to the argv.
    const remote = tail.slice(4).join(" ");
    expect(execFileSync("/bin/sh", ["-c", `${remote}`]).toString()).toBe("a b|$(id)|'q'|`x`|-e|;rm -rf /|");
    expect(shellQuote("it's")).toBe("'it'\\''s'");
    expect(buildSshArgs({ ...input, command: ["ls"] })[0]).toBe("-tt");
  });
});

describe("the terminal query's command", () => {
  const parse = (q: Record<string, string>) => terminalQuery.safeParse(q);
  it("takes a JSON argv, pty 0/1 and a TERM", () => {
    const r = parse({ command: JSON.stringify(["tar", "-cf", "-", "x y"]), pty: "0", term: "screen-256color" });
    expect(r.success && r.data).toMatchObject({ command: ["tar", "-cf", "-", "x y"], pty: false, term: "screen-256color" });
  });
  it("refuses what is not a bounded argv of strings", () => {
    for (const q of <Record<string, string>[]>[
      { command: "ls" },
      { command: "[]" },
      { command: '[""]' },
      { command: "[1]" },
      { command: JSON.stringify(["a\0b"]) },
      { command: JSON.stringify(Array.from({ length: 257 }, () => "a")) },
      { command: JSON.stringify(["x".repeat(9000)]) },
      { pty: "0" },
      { command: '["ls"]', pty: "yes" },
      { term: "xterm; rm -rf /" },
      { session: "00000000-0000-4000-8000-000000000000", command: '["ls"]' },
    ]) {
      expect(parse(q).success, JSON.stringify(q)).toBe(false);
    }
  });
});
