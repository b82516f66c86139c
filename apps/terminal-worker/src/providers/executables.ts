import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { delimiter, isAbsolute, join } from "node:path";

/** An executable: a name looked up on PATH or an absolute path. It may end up in ssh's ProxyCommand (a /bin/sh string), hence no metacharacters. */
export const EXECUTABLE_RE = /^[A-Za-z0-9_.+/-]{1,255}$/;

/** Where `name` resolves on `path` (as execvp would), or null. */
export async function findExecutable(name: string, path: string): Promise<string | null> {
  const candidates = isAbsolute(name) ? [name] : path.split(delimiter).filter(Boolean).map((d) => join(d, name));
  for (const c of candidates) {
    const ok = await access(c, constants.X_OK).then(
      () => stat(c).then((s) => s.isFile()),
      () => false,
    );
    if (ok) return c;
  }
  return null;
}
