import { chownSync, mkdirSync, statSync } from "node:fs";
import { open, rm, stat, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import { checkKey, type RecordingSink, type RecordingStore } from "./store.ts";

/** Written out at this many bytes, or after FLUSH_MS, whichever comes first. */
const FLUSH_BYTES = 64 * 1024;
const FLUSH_MS = 200;

/**
 * Recordings as files under `root` (the embedded default). A sink appends in the background, one
 * write at a time; a crash loses at most the last FLUSH_MS of output.
 */
export function createFsStore(root: string): RecordingStore {
  const pathOf = (key: string) => join(root, checkKey(key));
  /**
   * A worker running as root (the compose image) writes for API nodes that do not (user `node`):
   * what it makes under the store belongs to the store directory's owner, so they can read and
   * delete it. Null when this process is not root or the root is root's own.
   */
  let owner: { uid: number; gid: number } | null | undefined;
  const ownerOfRoot = () => {
    if (owner === undefined) {
      const st = process.getuid?.() === 0 ? statSync(root, { throwIfNoEntry: false }) : undefined;
      owner = st && st.uid !== 0 ? { uid: st.uid, gid: st.gid } : null;
    }
    return owner;
  };
  return {
    kind: "fs",
    create(key: string): RecordingSink {
      const path = pathOf(key);
      const first = mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      const o = ownerOfRoot();
      if (o) {
        // Every directory just made, from the first one down to the file's own.
        for (let d = dirname(path); first !== undefined && d.length >= first.length; d = dirname(d)) chownSync(d, o.uid, o.gid);
      }
      return new FsSink(path, o);
    },
    async read(key, from, max) {
      let fh: FileHandle;
      try {
        fh = await open(pathOf(key), "r");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
        throw err;
      }
      try {
        const buf = Buffer.allocUnsafe(max);
        const { bytesRead } = await fh.read(buf, 0, max, from);
        return buf.subarray(0, bytesRead);
      } finally {
        await fh.close();
      }
    },
    async delete(key) {
      await rm(pathOf(key), { force: true });
    },
    async recover(key) {
      try {
        return (await stat(pathOf(key))).size;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
        throw err;
      }
    },
  };
}

class FsSink implements RecordingSink {
  private parts: Buffer[] = [];
  private partsBytes = 0;
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<void>;
  private readonly fh: Promise<FileHandle>;
  error: unknown = null;

  constructor(path: string, owner: { uid: number; gid: number } | null = null) {
    this.fh = open(path, "w", 0o600).then(async (fh) => {
      if (owner) await fh.chown(owner.uid, owner.gid);
      return fh;
    });
    this.chain = this.fh.then(
      () => undefined,
      (err: unknown) => {
        this.error = err;
      },
    );
  }

  write(data: Buffer): void {
    if (this.error) return;
    this.parts.push(data);
    this.partsBytes += data.length;
    if (this.partsBytes >= FLUSH_BYTES) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.parts.length === 0) return;
    const data = this.parts;
    this.parts = [];
    this.partsBytes = 0;
    this.chain = this.chain.then(async () => {
      if (this.error) return;
      try {
        // One system call for the batch, no copy into one buffer first.
        await (await this.fh).writev(data);
      } catch (err) {
        this.error = err;
      }
    });
  }

  async close(): Promise<void> {
    this.flush();
    await this.chain;
    if (!this.error) await (await this.fh).close();
    if (this.error) throw this.error;
  }
}
