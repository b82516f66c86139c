import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { extractArgs, placeTree, sanitizeTree } from "./cp-place.ts";

/** One ustar entry: a 512-byte header (checksum included), then the data padded to 512. */
function entry(name: string, o: { type?: string; mode?: number; uid?: number; data?: string; link?: string; dev?: [number, number] } = {}): Buffer {
  const h = Buffer.alloc(512);
  const data = Buffer.from(o.data ?? "");
  const oct = (v: number, len: number) => v.toString(8).padStart(len - 1, "0");
  h.write(name, 0, 100, "utf8");
  h.write(oct(o.mode ?? 0o644, 8), 100);
  h.write(oct(o.uid ?? 0, 8), 108);
  h.write(oct(o.uid ?? 0, 8), 116);
  h.write(oct(data.length, 12), 124);
  h.write(oct(1_700_000_000, 12), 136);
  h.write(o.type ?? "0", 156);
  h.write(o.link ?? "", 157, 100, "utf8");
  h.write("ustar\u000000", 257);
  h.write(oct(o.dev?.[0] ?? 0, 8), 329);
  h.write(oct(o.dev?.[1] ?? 0, 8), 337);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\u0000 `, 148);
  return Buffer.concat([h, data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}
const archive = (...entries: Buffer[]) => Buffer.concat([...entries, Buffer.alloc(1024)]);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "molecule-cp-place-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** What a download does locally: the CLI's tar arguments into a 0700 stage, then sanitizeTree. */
function extract(tar: Buffer) {
  const stage = mkdtempSync(join(dir, ".molecule-cp-"));
  const r = spawnSync("tar", extractArgs(stage), { input: tar });
  return { stage, status: r.status, stderr: r.stderr.toString() };
}

describe("a download from a workspace (a tenant's tar stream) is made safe before it is placed", () => {
  it("device nodes and FIFOs are removed, setuid/setgid bits dropped, owners are ours; files, modes and links stay", async () => {
    const evil = archive(
      entry("t/", { type: "5", mode: 0o755 }),
      entry("t/run.sh", { mode: 0o750, data: "#!/bin/sh\n" }),
      entry("t/rootshell", { mode: 0o4755, data: "x" }),
      entry("t/groupshell", { mode: 0o2711, data: "x", uid: 1234 }),
      entry("t/mem", { type: "3", mode: 0o666, dev: [1, 1] }),
      entry("t/disk", { type: "4", mode: 0o666, dev: [8, 0] }),
      entry("t/pipe", { type: "6", mode: 0o666 }),
      entry("t/ln", { type: "2", link: "run.sh" }),
    );
    const x = extract(evil);
    // Run as root (CI is), tar makes the nodes; as anyone else it cannot, and the copy fails.
    if (process.getuid?.() !== 0) return expect(x.status).not.toBe(0);
    expect(x.status, x.stderr).toBe(0);
    expect(statSync(x.stage).mode & 0o777).toBe(0o700);
    expect(lstatSync(join(x.stage, "t/mem")).isCharacterDevice()).toBe(true);
    const report = await sanitizeTree(join(x.stage, "t"));
    expect(report.skipped).toEqual(
      expect.arrayContaining([
        { path: "mem", kind: "character device" },
        { path: "disk", kind: "block device" },
        { path: "pipe", kind: "FIFO" },
      ]),
    );
    expect(report.skipped).toHaveLength(3);
    expect(report.unprivileged.sort()).toEqual(["groupshell", "rootshell"]);
    const out = join(dir, "got");
    await placeTree(join(x.stage, "t"), out);
    expect(statSync(join(out, "rootshell")).mode & 0o7777).toBe(0o755);
    expect(statSync(join(out, "groupshell")).mode & 0o7777).toBe(0o711);
    expect(statSync(join(out, "groupshell")).uid).toBe(process.getuid?.());
    expect(statSync(join(out, "run.sh")).mode & 0o777).toBe(0o750);
    expect(readlinkSync(join(out, "ln"))).toBe("run.sh");
    for (const gone of ["mem", "disk", "pipe"]) expect(existsSync(join(out, gone))).toBe(false);
  });

  it("names outside the stage never land outside it: .., absolute names, writes through a symbolic link", async () => {
    const outside = join(dir, "outside");
    mkdirSync(outside);
    const x = extract(
      archive(
        entry("t/", { type: "5" }),
        entry("../escaped", { data: "x" }),
        entry("t/abs", { type: "2", link: outside }),
        entry("t/abs/through-link", { data: "x" }),
        entry("t/rel", { type: "2", link: "../../outside" }),
        entry("t/rel/through-link", { data: "x" }),
      ),
    );
    // tar refuses those members (a failed copy: nothing is placed) and writes nothing outside.
    expect(x.status).not.toBe(0);
    expect(existsSync(join(dir, "escaped"))).toBe(false);
    expect(existsSync(join(x.stage, "..", "escaped"))).toBe(false);
    expect(readdirSync(outside)).toEqual([]);
  });

  it("into an existing tree: contents merge, a file is replaced, a local symbolic link in the way is replaced, not followed", async () => {
    const elsewhere = join(dir, "elsewhere");
    mkdirSync(elsewhere);
    const dst = join(dir, "dst");
    mkdirSync(join(dst, "keep"), { recursive: true });
    writeFileSync(join(dst, "keep", "mine"), "mine");
    writeFileSync(join(dst, "old"), "old");
    symlinkSync(elsewhere, join(dst, "sub"));
    const x = extract(
      archive(
        entry("t/", { type: "5", mode: 0o750 }),
        entry("t/keep/", { type: "5", mode: 0o755 }),
        entry("t/keep/theirs", { data: "theirs" }),
        entry("t/old", { data: "new" }),
        entry("t/sub/", { type: "5", mode: 0o755 }),
        entry("t/sub/planted", { data: "x" }),
      ),
    );
    expect(x.status, x.stderr).toBe(0);
    await sanitizeTree(join(x.stage, "t"));
    await placeTree(join(x.stage, "t"), dst);
    expect(readFileSync(join(dst, "keep", "mine"), "utf8")).toBe("mine");
    expect(readFileSync(join(dst, "keep", "theirs"), "utf8")).toBe("theirs");
    expect(readFileSync(join(dst, "old"), "utf8")).toBe("new");
    expect(lstatSync(join(dst, "sub")).isDirectory()).toBe(true);
    expect(readdirSync(elsewhere)).toEqual([]);
    expect(statSync(dst).mode & 0o777).toBe(0o750);
  });

  it("a file does not replace a directory that holds something", async () => {
    const dst = join(dir, "dst");
    mkdirSync(join(dst, "full"), { recursive: true });
    writeFileSync(join(dst, "full", "x"), "x");
    const src = join(dir, "src");
    writeFileSync(src, "file");
    await expect(placeTree(src, join(dst, "full"))).rejects.toThrow(/not empty/);
    expect(readFileSync(join(dst, "full", "x"), "utf8")).toBe("x");
  });
});
