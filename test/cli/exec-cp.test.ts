import { createHash, randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import { chmodSync, createReadStream, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SUBPROTOCOL_V1 } from "@molecule/shared";
import { call, readyWorkspace, waitFor } from "../helpers/http.ts";
import { descendants } from "../../apps/terminal-worker/src/terminal/kill-tree.ts";
import { cmdlineOf, statusField } from "../helpers/procs.ts";
import { startStack, type Stack } from "../helpers/stack.ts";
import { buildCli, cliHome, PtyProc, runCli } from "./harness.ts";

let stack: Stack;
let token: string;
let bin: string;
let ws: string;
let env: Record<string, string>;
let work: string;
const cleanups: (() => void)[] = [];

beforeAll(async () => {
  const [s, b] = await Promise.all([startStack(), buildCli()]);
  stack = s;
  bin = b.bin;
  cleanups.push(b.cleanup);
  token = (await stack.org("exec")).token;
  ws = await readyWorkspace(stack.url, token, "exec-ws");
  const h = cliHome();
  cleanups.push(h.cleanup);
  env = { ...h.env, MOLECULE_TOKEN: token, MOLECULE_API: stack.url };
  work = mkdtempSync(join(tmpdir(), "molecule-cp-"));
  cleanups.push(() => rmSync(work, { recursive: true, force: true }));
});
afterAll(async () => {
  for (const c of cleanups) c();
  await stack?.close();
});

async function sha256File(p: string): Promise<string> {
  const h = createHash("sha256");
  for await (const c of createReadStream(p)) h.update(c as Buffer);
  return h.digest("hex");
}

describe("molecule exec", () => {
  it("echo hi | molecule exec ws -- cat prints hi; the session row shows the command", async () => {
    const r = await runCli(bin, ["exec", "exec-ws", "--", "cat"], { env, input: "hi\n" });
    expect(r).toMatchObject({ code: 0, stdout: "hi\n", stderr: "" });
    const row = (await call(stack.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token })).body.sessions[0];
    expect(row).toMatchObject({ command: ["cat"], pty: false, exit_code: 0, close_reason: "exit" });
  });

  it("molecule sessions shows another member's command with its control characters escaped, not sent to this terminal", async () => {
    // An OSC 52 clipboard write, a DEL and a C1 CSI in the argv: the audit keeps them as typed.
    const argv = ["true", "\u001b]52;c;cHduZWQ=\u0007", "a\u007fb", "\u009b2J"];
    expect((await runCli(bin, ["exec", ws, "--", ...argv], { env })).code).toBe(0);
    const row = (await call(stack.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token })).body.sessions[0];
    expect(row.command).toEqual(argv);
    const table = await runCli(bin, ["sessions", ws, "--limit", "1"], { env });
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    expect(table.stdout).toContain("\\u001b]52;c;cHduZWQ=\\u0007");
    expect(table.stdout).toContain("a\\u007fb");
    expect(table.stdout).toContain("\\u009b2J");
  });

  it("stdout and stderr apart, the exit code ours, arguments as given (no shell on the way)", async () => {
    const r = await runCli(bin, ["exec", ws, "--", "sh", "-c", 'echo out; echo err >&2; printf "%s|" "$@"; exit 5', "sh", "a b", "$HOME", "'q'", "-x"], { env });
    expect(r.code).toBe(5);
    expect(r.stdout).toBe("out\na b|$HOME|'q'|-x|");
    expect(r.stderr).toBe("err\n");
    const missing = await runCli(bin, ["exec", ws, "--", "no-such-program-here"], { env });
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/no-such-program-here/);
  });

  it("is binary-safe both ways (4 MiB of random bytes through cat)", async () => {
    const data = randomBytes(4 * 1024 * 1024);
    const r = await runCli(bin, ["exec", ws, "--", "cat"], { env, input: data });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdoutBytes.length).toBe(data.length);
    expect(createHash("sha256").update(r.stdoutBytes).digest("hex")).toBe(createHash("sha256").update(data).digest("hex"));
  });

  it("on a terminal (or -t) it runs in a PTY, with its exit code", async () => {
    const p = new PtyProc(process.execPath, [bin, "exec", ws, "--", "sh", "-c", "tty; stty size; exit 4"], { env, cols: 90, rows: 20 });
    expect((await p.exited).exitCode).toBe(4);
    // The sandbox's minimal /dev shows the PTY as its console.
    expect(p.text).toMatch(/\/dev\/(pts\/\d+|console)/);
    expect(p.text).toMatch(/20 90/);
    const forced = await runCli(bin, ["exec", "-t", ws, "--", "tty"], { env });
    expect(forced.stdout).toMatch(/\/dev\/(pts\/\d+|console)/);
    const notty = await runCli(bin, ["exec", ws, "--", "tty"], { env });
    expect(notty.stdout).toMatch(/not a tty/);
  });

  it("runs in the workspace's sandbox like its shell: root inside, an unprivileged uid outside, no network but loopback", async () => {
    const r = await runCli(bin, ["exec", ws, "--", "sh", "-c", 'id -u; echo $MOLECULE_WS_ID; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "; ls -A / | grep -c molecule-workspace'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split("\n")).toEqual(["0", ws, "lo", "1", ""]);
    // Seen from the host: the command runs as a uid of the workspace's own, not as root. `cat`
    // lives while our stdin is open, so a slow open under load is waited for, not raced; it is
    // looked for among this process's descendants only (the worker runs in it).
    const c = spawn(process.execPath, [bin, "exec", ws, "--", "cat"], { env, stdio: ["pipe", "pipe", "pipe"] });
    const stderr: Buffer[] = [];
    c.stderr.on("data", (b: Buffer) => stderr.push(b));
    const exited = new Promise<number | null>((resolve) => c.on("close", resolve));
    let ended: number | null | undefined;
    void exited.then((code) => {
      ended = code;
    });
    try {
      const uid = await waitFor(async () => {
        if (ended !== undefined) throw new Error(`exec ended before its command was seen: code ${ended}, ${Buffer.concat(stderr).toString()}`);
        const pid = descendants(process.pid).find((p) => cmdlineOf(p) === "cat");
        return pid === undefined ? null : Number(statusField(pid, "Uid").split(/\s+/)[0]);
      }, 30_000);
      expect(uid).toBeGreaterThanOrEqual(200_000);
      c.stdin.end();
      expect(await exited, Buffer.concat(stderr).toString()).toBe(0);
    } finally {
      c.kill("SIGKILL");
    }
  });

  it("a bad command never reaches a worker: 400 before the upgrade", async () => {
    for (const q of ["command=not-json", `command=${encodeURIComponent("[]")}`, `command=${encodeURIComponent('["a\\u0000b"]')}`, "pty=0", `command=${encodeURIComponent('[""]')}`]) {
      const status = await new Promise<number>((resolve) => {
        const s = new WebSocket(`${stack.wsUrl}/workspaces/${ws}/terminal?${q}`, [SUBPROTOCOL_V1], { headers: { authorization: `Bearer ${token}` } });
        s.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        s.on("open", () => {
          s.close();
          resolve(101);
        });
        s.on("error", () => {});
      });
      expect(status, q).toBe(400);
    }
  });
});

describe("molecule cp", () => {
  it("a 100 MB file up and down, with the same checksum", async () => {
    const src = join(work, "big.bin");
    const chunk = randomBytes(1024 * 1024);
    writeFileSync(src, Buffer.concat(Array.from({ length: 100 }, (_, i) => Buffer.concat([chunk.subarray(i), chunk.subarray(0, i)]))));
    const want = await sha256File(src);
    const up = await runCli(bin, ["cp", src, `${ws}:/root/big.bin`], { env, timeoutMs: 240_000 });
    expect(up.code, up.stderr).toBe(0);
    const remote = await runCli(bin, ["exec", ws, "--", "sha256sum", "/root/big.bin"], { env });
    expect(remote.stdout.split(" ")[0]).toBe(want);
    const back = join(work, "big.back");
    const down = await runCli(bin, ["cp", `${ws}:/root/big.bin`, back], { env, timeoutMs: 240_000 });
    expect(down.code, down.stderr).toBe(0);
    expect(await sha256File(back)).toBe(want);
    // On a terminal, a download shows how far it is: the workspace's du gives the size.
    const onTty = new PtyProc(process.execPath, [bin, "cp", `${ws}:/root/big.bin`, join(work, "big.tty")], { env });
    expect((await onTty.exited).exitCode, onTty.text).toBe(0);
    expect(onTty.text).toMatch(/\[#* *\] +\d+% [\d.]+ MiB \/ 100\.0 MiB/);
    expect(onTty.text).not.toMatch(/molecule-size/);
    expect(await sha256File(join(work, "big.tty"))).toBe(want);
  }, 300_000);

  it("a directory with its modes, into an existing directory and to a new name", async () => {
    const dir = join(work, "tree");
    mkdirSync(join(dir, "sub"), { recursive: true });
    writeFileSync(join(dir, "run.sh"), "#!/bin/sh\necho ran\n");
    chmodSync(join(dir, "run.sh"), 0o750);
    writeFileSync(join(dir, "sub", "secret"), "s3cret");
    chmodSync(join(dir, "sub", "secret"), 0o600);
    chmodSync(join(dir, "sub"), 0o711);
    expect((await runCli(bin, ["exec", ws, "--", "mkdir", "-p", "/root/in"], { env })).code).toBe(0);
    const up = await runCli(bin, ["cp", dir, `${ws}:/root/in`], { env });
    expect(up.code, up.stderr).toBe(0);
    const ls = await runCli(bin, ["exec", ws, "--", "stat", "-c", "%a %n", "/root/in/tree/run.sh", "/root/in/tree/sub", "/root/in/tree/sub/secret"], { env });
    expect(ls.stdout).toBe("750 /root/in/tree/run.sh\n711 /root/in/tree/sub\n600 /root/in/tree/sub/secret\n");
    expect((await runCli(bin, ["exec", ws, "--", "/root/in/tree/run.sh"], { env })).stdout).toBe("ran\n");
    const renamed = await runCli(bin, ["cp", dir, `${ws}:/root/copy2`], { env });
    expect(renamed.code, renamed.stderr).toBe(0);
    expect((await runCli(bin, ["exec", ws, "--", "cat", "/root/copy2/sub/secret"], { env })).stdout).toBe("s3cret");
    const back = join(work, "tree-back");
    const down = await runCli(bin, ["cp", `${ws}:/root/in/tree`, back], { env });
    expect(down.code, down.stderr).toBe(0);
    expect(statSync(join(back, "run.sh")).mode & 0o777).toBe(0o750);
    expect(statSync(join(back, "sub")).mode & 0o777).toBe(0o711);
    expect(statSync(join(back, "sub", "secret")).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(back, "sub", "secret"), "utf8")).toBe("s3cret");
    // Into an existing directory: it lands inside, beside what is there.
    const into = join(work, "into");
    mkdirSync(into);
    writeFileSync(join(into, "mine"), "mine");
    const downInto = await runCli(bin, ["cp", `${ws}:/root/in/tree`, into], { env });
    expect(downInto.code, downInto.stderr).toBe(0);
    expect(readFileSync(join(into, "tree", "sub", "secret"), "utf8")).toBe("s3cret");
    expect(statSync(join(into, "tree", "run.sh")).mode & 0o777).toBe(0o750);
    expect(readdirSync(into).sort()).toEqual(["mine", "tree"]);
    const missing = await runCli(bin, ["cp", `${ws}:/root/nothing-here`, join(work, "x")], { env });
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/nothing-here/);
  });

  it("what a workspace sends back is a tenant's data: setuid bits dropped, a FIFO skipped, files ours, links kept as links", async () => {
    const make = ["set -e", "d=/root/hostile; rm -rf $d; mkdir $d", "cp /bin/true $d/rootshell; chmod 4755 $d/rootshell", "mkfifo $d/pipe", "ln -s /etc $d/etc-link", "echo data > $d/data"].join("; ");
    const made = await runCli(bin, ["exec", ws, "--", "/bin/sh", "-c", make], { env });
    expect(made.code, made.stderr).toBe(0);
    const back = join(work, "hostile-back");
    const down = await runCli(bin, ["cp", `${ws}:/root/hostile`, back], { env });
    expect(down.code, down.stderr).toBe(0);
    expect(down.stderr).toMatch(/skipped pipe \(a FIFO/);
    expect(down.stderr).toMatch(/dropped the setuid\/setgid bits of rootshell/);
    expect(readdirSync(back).sort()).toEqual(["data", "etc-link", "rootshell"]);
    const shell = statSync(join(back, "rootshell"));
    expect(shell.mode & 0o7777).toBe(0o755);
    expect(shell.uid).toBe(process.getuid?.());
    expect(readlinkSync(join(back, "etc-link"))).toBe("/etc");
    expect(readFileSync(join(back, "data"), "utf8")).toBe("data\n");
    // Nothing is left of the staging directory beside it.
    expect(readdirSync(work).filter((n) => n.startsWith(".molecule-cp-"))).toEqual([]);
  });

  it("Ctrl-C during a download or an upload leaves nothing behind on either side; a destination that cannot be made says why, without a stack", async () => {
    const made = await runCli(bin, ["exec", ws, "--", "sh", "-c", "head -c 150000000 /dev/zero > /root/zero.bin"], { env });
    expect(made.code, made.stderr).toBe(0);
    const into = join(work, "interrupted");
    mkdirSync(into);
    const p = new PtyProc(process.execPath, [bin, "cp", `${ws}:/root/zero.bin`, into], { env });
    // The bar shows once the copy is under way: the stage is there, part written.
    await p.waitText(/\d+%/, 60_000);
    expect(readdirSync(into).some((n) => n.startsWith(".molecule-cp-"))).toBe(true);
    p.write("\u0003");
    expect((await p.exited).exitCode, p.text).toBe(130);
    expect(readdirSync(into)).toEqual([]);
    // The remote tar was ended with the session (a dropped socket would have left it the orphan grace, 60 s).
    const newest = async () => (await call(stack.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token })).body.sessions[0];
    await waitFor(async () => (await newest()).closed_at !== null, 15_000);
    expect(await newest()).toMatchObject({ command: ["/bin/sh", "-c", expect.stringContaining("tar -cf -"), "molecule-cp", "/root", "zero.bin"], close_reason: "client_closed" });
    // An upload interrupted (SIGINT to the CLI alone: its local tar goes on, so the remote end
    // sees the session end, not a short archive): its temporary directory goes with it.
    const big = join(work, "zero-up.bin");
    writeFileSync(big, Buffer.alloc(150_000_000));
    const up = new PtyProc(process.execPath, [bin, "cp", big, `${ws}:/root/up-interrupted/zero.bin`], { env });
    await up.waitText(/\d+%/, 60_000);
    process.kill(up.p.pid, "SIGINT");
    expect((await up.exited).exitCode, up.text).toBe(130);
    await waitFor(async () => (await newest()).closed_at !== null, 15_000);
    const left = await runCli(bin, ["exec", ws, "--", "ls", "-A", "/root/up-interrupted"], { env });
    expect(left).toMatchObject({ code: 0, stdout: "" });
    const bad = await runCli(bin, ["cp", `${ws}:/root/in`, join(work, "no", "such", "dir")], { env });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe(`error: ${join(work, "no", "such", "dir")}: the directory ${join(work, "no", "such")} does not exist (local_path)\n`);
    // Any other file error: the path and why, no stack.
    writeFileSync(join(work, "a-file"), "");
    const notDir = await runCli(bin, ["cp", `${ws}:/root/in`, join(work, "a-file", "x")], { env });
    expect(notDir.code).toBe(1);
    expect(notDir.stderr).toMatch(new RegExp(`^error: ${join(work, "a-file")}/\\.molecule-cp-\\w+: not a directory \\(ENOTDIR\\)\n$`));
  });
});
