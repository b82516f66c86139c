import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { lstat, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { posix } from "node:path";
import { PassThrough } from "node:stream";
import type { Context } from "../context.ts";
import { CliError, EXIT, usageError } from "../errors.ts";
import { extractArgs, placeTree, sanitizeTree } from "./cp-place.ts";
import { bytes } from "../output.ts";
import { piped } from "./exec.ts";
import { reconnectSeconds } from "./ssh.ts";

/**
 * The remote end of an upload, a constant script (never built from user data): $1 is the
 * destination, $2 the name the tar stream holds. Into an existing directory (or a path ending
 * in /) it extracts there; otherwise the one entry becomes $1 (via a temporary directory
 * beside it, so nothing half-written takes the name, and nothing is left if it is interrupted).
 */
const UPLOAD_SCRIPT = [
  'dest=$1; name=$2',
  'if [ -d "$dest" ]; then exec tar -C "$dest" -xpf -; fi',
  'case "$dest" in */) mkdir -p -- "$dest" && exec tar -C "$dest" -xpf - ;; esac',
  'dir=$(dirname -- "$dest"); mkdir -p -- "$dir" || exit 1',
  't=$(mktemp -d "$dir/.molecule-cp.XXXXXX") || exit 1',
  // An interrupted copy (the session ends: SIGHUP to tar and to us) leaves no half-written tree.
  'trap \'rm -rf -- "$t"; exit 129\' HUP TERM INT',
  'tar -C "$t" -xpf - && mv -f -- "$t/$name" "$dest"; s=$?; rm -rf -- "$t"; exit $s',
].join("\n");

/**
 * The remote end of a download, a constant script: $1 the directory, $2 the name in it. Beside
 * tar, which streams at once, du finds the size for the progress bar (GNU du in bytes, another
 * in KiB) and says it on stderr as `molecule-size N`; without du there is no total, nothing else.
 */
const DOWNLOAD_SCRIPT = [
  'cd -- "$1" || exit 1',
  '( if s=$(du -sb -- "$2" 2>/dev/null); then u=1; elif s=$(du -sk -- "$2" 2>/dev/null); then u=1024; else exit 0; fi',
  '  s=${s%%[!0-9]*}; [ -n "$s" ] && printf "molecule-size %s\\n" "$((s * u))" >&2 ) &',
  'exec tar -cf - -- "$2"',
].join("\n");
const SIZE_LINE = /(?:^|\n)molecule-size (\d+)\n/;

/** `ws:path` (a workspace name or id, then a path), or null for a local path. */
export function parseRemote(arg: string): { ws: string; path: string } | null {
  const m = /^([^:/]+):(.*)$/.exec(arg);
  if (!m) return null;
  const path = m[2] || ".";
  return { ws: m[1] as string, path };
}

async function treeSize(p: string): Promise<number> {
  const s = await lstat(p);
  if (!s.isDirectory()) return s.size;
  let n = 0;
  for (const e of await readdir(p)) n += await treeSize(join(p, e));
  return n;
}

function progressBar(size: number | null) {
  let total = size;
  const tty = process.stderr.isTTY === true;
  const t0 = performance.now();
  let last = 0;
  let shown = false;
  return {
    update(n: number) {
      const now = performance.now();
      // Only for copies that take a while, and at most 10 times a second.
      if (!tty || now - t0 < 500 || now - last < 100) return;
      last = now;
      shown = true;
      const rate = n / Math.max(0.001, (now - t0) / 1000);
      const pct = total ? ` ${Math.min(100, Math.floor((n / total) * 100))
        .toString()
        .padStart(3)}%` : "";
      const width = 24;
      const bar = total ? `[${"#".repeat(Math.min(width, Math.floor((n / total) * width))).padEnd(width)}]` : "";
      process.stderr.write(`\r\x1b[K${bar}${pct} ${bytes(n)}${total ? ` / ${bytes(total)}` : ""}  ${bytes(rate)}/s`);
    },
    /** A download learns its size once the transfer is under way (du, beside tar). */
    setTotal(n: number) {
      if (n > 0) total = n;
    },
    done() {
      if (shown) process.stderr.write("\r\x1b[K");
    },
  };
}

function localTar(args: string[], stdio: ["pipe" | "ignore", "pipe" | "ignore", "pipe"]) {
  const child = spawn("tar", args, { stdio });
  // Read from the start: Node drains (and drops) an unread stdout once the child exits, and a
  // small archive is written and done before the session is open.
  const output = new PassThrough({ highWaterMark: 1024 * 1024 });
  child.stdout?.pipe(output);
  let err = "";
  child.stderr?.on("data", (b: Buffer) => (err = (err + b.toString()).slice(-4000)));
  // A download's tar that ended early (an error, or Ctrl-C, which reaches it too): the writes
  // after fail with EPIPE; its exit status is what reports it.
  child.stdin?.on("error", (e: NodeJS.ErrnoException) => (err = `${err}(its input closed: ${e.code ?? e.message})\n`.slice(-4000)));
  const exited = new Promise<number>((res, rej) => {
    child.once("error", (e) => rej(new CliError(`tar could not run here: ${e.message}`, EXIT.error, "local_tar")));
    child.once("close", (code) => res(code ?? 1));
  });
  return { child, output, exited, stderr: () => err };
}

/** `molecule cp <src> <ws>:<dest>` or `molecule cp <ws>:<src> <dest>`: files and directories, modes kept. */
export async function cp(ctx: Context, src: string, dest: string, flags: { reconnectTimeout?: string }): Promise<number> {
  const reconnectSec = reconnectSeconds(flags.reconnectTimeout);
  const rs = parseRemote(src);
  const rd = parseRemote(dest);
  if (rs && rd) throw usageError("copy between two workspaces: through a local directory");
  if (!rs && !rd) throw usageError("one side must be <workspace>:<path>");
  const stderrSink = new PassThrough();
  let remoteErr = "";
  let onSize: ((n: number) => void) | null = null;
  stderrSink.on("data", (b: Buffer) => {
    remoteErr = (remoteErr + b.toString()).slice(-4000);
    const m = onSize && SIZE_LINE.exec(remoteErr);
    if (m) {
      onSize?.(Number(m[1]));
      onSize = null;
      remoteErr = remoteErr.replace(SIZE_LINE, (line) => (line.startsWith("\n") ? "\n" : ""));
    }
  });
  if (rd) {
    const local = resolve(src);
    const total = await treeSize(local).catch((e: NodeJS.ErrnoException) => {
      throw new CliError(`${src}: ${e.code === "ENOENT" ? "no such file or directory" : e.message}`, EXIT.error, "local_path");
    });
    const tar = localTar(["-C", dirname(local), "-cf", "-", "--", basename(local)], ["ignore", "pipe", "pipe"]);
    const bar = progressBar(total);
    const code = await piped(ctx, rd.ws, ["/bin/sh", "-c", UPLOAD_SCRIPT, "molecule-cp", rd.path, basename(local)], {
      reconnectSec,
      stdin: tar.output,
      stdout: process.stdout,
      stderr: stderrSink,
      progress: (sent) => bar.update(sent),
    });
    bar.done();
    const tarCode = await tar.exited;
    if (tarCode !== 0) throw new CliError(`tar (local) failed: ${tar.stderr().trim()}`, EXIT.error, "local_tar");
    if (code !== 0) throw new CliError(`the copy into ${rd.ws}:${rd.path} failed (exit ${code}): ${remoteErr.trim()}`, code, "remote_tar");
    return EXIT.ok;
  }
  const remote = rs!;
  const target = resolve(dest);
  const into = await stat(target).then((s) => s.isDirectory(), () => false);
  // Staged beside where it goes (one file system, so the last step is a rename), mode 0700.
  const stage = await mkdtemp(join(into ? target : dirname(target), ".molecule-cp-")).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "ENOENT") throw e;
    throw new CliError(`${dest}: the directory ${dirname(target)} does not exist`, EXIT.error, "local_path");
  });
  // Ctrl-C exits at once (program.ts): the stage must not outlive us.
  const dropStage = () => rmSync(stage, { recursive: true, force: true });
  process.once("exit", dropStage);
  try {
    const rpath = posix.normalize(remote.path);
    const name = posix.basename(rpath) || ".";
    const tar = localTar(extractArgs(stage), ["pipe", "ignore", "pipe"]);
    const bar = progressBar(null);
    onSize = (n) => bar.setTotal(n);
    const empty = new PassThrough();
    empty.end();
    const code = await piped(ctx, remote.ws, ["/bin/sh", "-c", DOWNLOAD_SCRIPT, "molecule-cp", posix.dirname(rpath), name], {
      reconnectSec,
      stdin: empty,
      stdout: tar.child.stdin!,
      stderr: stderrSink,
      progress: (_s, received) => bar.update(received),
    });
    tar.child.stdin!.end();
    bar.done();
    const tarCode = await tar.exited;
    if (code !== 0) throw new CliError(`the copy from ${remote.ws}:${remote.path} failed (exit ${code}): ${remoteErr.trim()}`, code, "remote_tar");
    if (tarCode !== 0) throw new CliError(`tar (local) failed: ${tar.stderr().trim()}`, EXIT.error, "local_tar");
    const got = name === "." ? stage : join(stage, name);
    const report = await sanitizeTree(got);
    for (const s of report.skipped) process.stderr.write(`molecule: skipped ${s.path} (a ${s.kind}: cp copies files, directories and links)\n`);
    if (report.unprivileged.length) process.stderr.write(`molecule: dropped the setuid/setgid bits of ${report.unprivileged.join(", ")}\n`);
    await placeTree(got, into ? join(target, name) : target);
    return EXIT.ok;
  } finally {
    await rm(stage, { recursive: true, force: true });
    process.off("exit", dropStage);
  }
}
