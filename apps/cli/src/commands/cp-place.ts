import { chmod, lstat, readdir, rename, rmdir, unlink, utimes } from "node:fs/promises";
import { join, relative } from "node:path";
import { CliError, EXIT } from "../errors.ts";

/**
 * What comes back from a workspace is a tenant's data: its tar stream can hold device nodes,
 * FIFOs, setuid files and any owner (kubectl cp's CVEs were this class). Local tar refuses `..`
 * and absolute names and defers dangerous symlinks, but run as root it makes device nodes and
 * keeps setuid bits. So a download is extracted, with --no-same-owner, into a private (0700)
 * staging directory, made safe there, and only then moved into place.
 */
export interface SanitizeReport {
  /** Entries removed because they are neither files, directories nor symbolic links. */
  skipped: { path: string; kind: string }[];
  /** Files whose setuid/setgid bits were dropped. */
  unprivileged: string[];
}

const SETID = 0o6000;

/** Local tar's arguments for a download into `dir`: files are ours, whatever owner the archive names. */
export const extractArgs = (dir: string): string[] => ["--no-same-owner", "-C", dir, "-xpf", "-"];

function kindOf(s: Awaited<ReturnType<typeof lstat>>): string {
  if (s.isCharacterDevice()) return "character device";
  if (s.isBlockDevice()) return "block device";
  if (s.isFIFO()) return "FIFO";
  if (s.isSocket()) return "socket";
  return "special file";
}

/** Walks `root` (never following a symbolic link): removes special files, drops setuid/setgid bits. */
export async function sanitizeTree(root: string): Promise<SanitizeReport> {
  const report: SanitizeReport = { skipped: [], unprivileged: [] };
  const walk = async (p: string): Promise<void> => {
    const s = await lstat(p);
    if (s.isSymbolicLink()) return;
    if (s.isDirectory()) {
      for (const e of await readdir(p)) await walk(join(p, e));
      return;
    }
    if (s.isFile()) {
      if (s.mode & SETID) {
        await chmod(p, s.mode & 0o1777);
        report.unprivileged.push(relative(root, p));
      }
      return;
    }
    await unlink(p);
    report.skipped.push({ path: relative(root, p), kind: kindOf(s) });
  };
  await walk(root);
  return report;
}

/**
 * Moves the tree at `src` to `dst`. Where both are directories their contents merge, as tar
 * extracting over an existing tree does (the directory takes the mode and times it arrived
 * with); anything else at `dst` is replaced, a symbolic link there included (it is never
 * followed), and an empty directory gives way to a file.
 */
export async function placeTree(src: string, dst: string): Promise<void> {
  const s = await lstat(src);
  const d = await lstat(dst).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return null;
    throw e;
  });
  if (d?.isDirectory()) {
    if (s.isDirectory()) {
      for (const e of await readdir(src)) await placeTree(join(src, e), join(dst, e));
      await chmod(dst, s.mode & 0o7777);
      await utimes(dst, s.atime, s.mtime);
      return;
    }
    await rmdir(dst).catch((e: NodeJS.ErrnoException) => {
      throw new CliError(`${dst}: a directory that is not empty is there; not replaced by a file`, EXIT.error, "local_path", e.code);
    });
  } else if (d && s.isDirectory()) {
    // rename(2) puts a directory only where none is or an empty one: a file or a link goes first.
    await unlink(dst);
  }
  await rename(src, dst);
}
