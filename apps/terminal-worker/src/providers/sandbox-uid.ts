import { createHash } from "node:crypto";
import { mkdir, readFile, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";

/**
 * Per-workspace host uids: uid = base + slot, the slot claimed with an O_EXCL
 * file `<sandbox root>/.uids/<slot>` holding the workspace id (shared by every
 * worker on the sandbox root, so two workers never hand one uid to two
 * workspaces). The id's hash picks the first slot tried; destroy releases it.
 */
export interface UidRange {
  base: number;
  count: number;
}

export const claimsDir = (root: string) => join(root, ".uids");

function firstSlot(id: string, count: number): number {
  return createHash("sha256").update(id).digest().readUInt32BE(0) % count;
}

async function owner(root: string, slot: number): Promise<string | null> {
  try {
    return (await readFile(join(claimsDir(root), String(slot)), "utf8")).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

/** The uid of workspace `id`: its existing claim, else a new one. Throws when the range is full. */
export async function claimUid(root: string, id: string, r: UidRange): Promise<number> {
  await mkdir(claimsDir(root), { recursive: true, mode: 0o700 });
  const start = firstSlot(id, r.count);
  for (let i = 0; i < r.count; i++) {
    const slot = (start + i) % r.count;
    try {
      await writeFile(join(claimsDir(root), String(slot)), `${id}\n`, { flag: "wx", mode: 0o600 });
      return r.base + slot;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      // Ours already (a retried create)? Else taken: probe the next slot.
      if ((await owner(root, slot)) === id) return r.base + slot;
    }
  }
  throw new Error(`no free sandbox uid in ${r.base}..${r.base + r.count - 1} (MOLECULE_SANDBOX_UID_BASE/_COUNT)`);
}

/** True when `uid` is in the range and claimed by `id` (a workspace dir's owner is its uid). */
export async function ownsUid(root: string, id: string, uid: number, r: UidRange): Promise<boolean> {
  if (uid < r.base || uid >= r.base + r.count) return false;
  return (await owner(root, uid - r.base)) === id;
}

/**
 * Releases `id`'s claim, leaving anyone else's alone. `uid` is the workspace dir's
 * owner; without it (dir already gone) the first slots of its probe sequence are tried.
 */
export async function releaseUid(root: string, id: string, uid: number | null, r: UidRange): Promise<void> {
  const start = firstSlot(id, r.count);
  const candidates = uid !== null ? [uid - r.base] : Array.from({ length: Math.min(64, r.count) }, (_, i) => (start + i) % r.count);
  for (const slot of candidates) {
    if (slot < 0 || slot >= r.count || (await owner(root, slot)) !== id) continue;
    await unlink(join(claimsDir(root), String(slot))).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
    return;
  }
}
