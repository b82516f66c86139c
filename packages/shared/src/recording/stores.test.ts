import { randomUUID } from "node:crypto";
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
// @ts-expect-error s3rver ships no types
import S3rver from "s3rver";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFsStore } from "./fs-store.ts";
import { createS3Store } from "./s3-store.ts";
import { recordingKey, type RecordingStore } from "./store.ts";

const key = () => recordingKey(randomUUID(), randomUUID(), randomUUID());

async function readAll(store: RecordingStore, k: string): Promise<Buffer | null> {
  const parts: Buffer[] = [];
  for (let from = 0; ; ) {
    const b = await store.read(k, from, 64 * 1024);
    if (b === null) return null;
    if (b.length === 0) return Buffer.concat(parts);
    parts.push(b);
    from += b.length;
  }
}

/** What a recording looks like to a store: many small writes. */
function lines(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `[${i}.000000, "o", "line ${i} ${"é".repeat(i % 50)}"]\n`);
}

describe("filesystem store", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "molecule-rec-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.skipIf(process.getuid?.() !== 0)("written by root (the compose worker), belongs to the store directory's owner (the API's user)", async () => {
    const root = join(dir, "owned");
    mkdirSync(root);
    chownSync(root, 4321, 4321);
    const store = createFsStore(root);
    const k = key();
    const sink = store.create(k);
    sink.write(Buffer.from("x"));
    await sink.close();
    const [org, workspace] = k.split("/");
    for (const p of [join(root, org!), join(root, org!, workspace!), join(root, k)]) expect(statSync(p).uid, p).toBe(4321);
  });

  it("appends in order, is readable while it grows and after close, and deletes", async () => {
    const store = createFsStore(dir);
    const k = key();
    const sink = store.create(k);
    const all = lines(20_000);
    for (const l of all.slice(0, 10_000)) sink.write(Buffer.from(l));
    // Readable while being written: what is there is a prefix of what was written.
    let seen: Buffer | null = null;
    for (let i = 0; i < 100 && !(seen && seen.length > 0); i++) {
      seen = await readAll(store, k);
      await new Promise((r) => setImmediate(r));
    }
    for (const l of all.slice(10_000)) sink.write(Buffer.from(l));
    await sink.close();
    const text = all.join("");
    expect(seen!.length).toBeGreaterThan(0);
    expect(Buffer.from(text).subarray(0, seen!.length).equals(seen!)).toBe(true);
    expect(readFileSync(join(dir, k), "utf8")).toBe(text);
    expect((await readAll(store, k))!.toString()).toBe(text);
    expect(await store.recover(k)).toBe(Buffer.byteLength(text));
    await store.delete(k);
    expect(await store.read(k, 0, 10)).toBeNull();
    expect(await store.recover(k)).toBeNull();
  });

  it("refuses a key that is not a recording key (no path out of its root)", async () => {
    const store = createFsStore(dir);
    await expect(store.read("../../etc/passwd", 0, 10)).rejects.toThrow(/not a recording key/);
    expect(() => store.create("a/../../b.tape")).toThrow(/not a recording key/);
  });
});

describe("S3 store against a local S3-compatible server (s3rver)", () => {
  let dir: string;
  let server: { run(): Promise<AddressInfo>; close(): Promise<void> };
  let endpoint: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "molecule-s3rver-"));
    server = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: dir, configureBuckets: [{ name: "recordings" }] });
    const addr = await server.run();
    endpoint = `http://127.0.0.1:${addr.port}`;
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const store = () =>
    createS3Store({ bucket: "recordings", prefix: "casts/", region: "us-east-1", endpoint, credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" }, partBytes: 64 * 1024 });

  it("uploads in parts (never the whole recording at once) and serves the completed object by range", async () => {
    const s = store();
    const k = key();
    const sink = s.create(k);
    const all = lines(30_000); // ~1.5 MB: about two dozen parts of 64 KiB
    for (const l of all) sink.write(Buffer.from(l));
    // Not readable until the upload is complete.
    expect(await s.read(k, 0, 10)).toBeNull();
    await sink.close();
    // Parts went up as they filled (the sink's own list of uploaded parts).
    expect((sink as unknown as { done: unknown[] }).done.length).toBeGreaterThan(10);
    const got = await readAll(s, k);
    expect(got!.toString()).toBe(all.join(""));
    // Range reads: a follower reading from an offset gets exactly the rest.
    const tail = await s.read(k, 100, 50);
    expect(tail!.toString()).toBe(Buffer.from(all.join("")).subarray(100, 150).toString());
    expect((await s.read(k, got!.length, 10))!.length).toBe(0);
    await s.delete(k);
    expect(await s.read(k, 0, 10)).toBeNull();
  });

  it("a writer that died mid-upload: recover() completes the upload with the parts that reached S3, a prefix of what was written", async () => {
    const s = store();
    const k = key();
    const sink = s.create(k);
    const all = lines(30_000);
    for (const l of all) sink.write(Buffer.from(l));
    // The "crash": close() is never called; wait until some parts are up.
    const done = (sink as unknown as { done: unknown[] }).done;
    for (let i = 0; i < 200 && done.length < 4; i++) await new Promise((r) => setTimeout(r, 20));
    expect(done.length).toBeGreaterThanOrEqual(4);
    // The writer dies here: nothing more goes up once what is in flight has landed.
    const dead = sink as unknown as { error: unknown; chain: Promise<void> };
    dead.error = new Error("worker crashed");
    await dead.chain;
    expect(await s.read(k, 0, 10)).toBeNull();
    const size = await s.recover(k);
    // Every uploaded part (each at least partBytes) is in the recording.
    expect(size).toBeGreaterThanOrEqual(done.length * 64 * 1024);
    const got = (await readAll(s, k))!;
    expect(got.length).toBe(size);
    expect(Buffer.from(all.join("")).subarray(0, got.length).equals(got)).toBe(true);
    // Nothing of it: null, and nothing left behind.
    expect(await s.recover(key())).toBeNull();
  });

  it("a failing server makes close() fail (the worker logs it), writes never throw", async () => {
    const s = createS3Store({ bucket: "no-such-bucket", prefix: "", region: "us-east-1", endpoint, credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" }, partBytes: 64 * 1024 });
    const sink = s.create(key());
    for (const l of lines(100)) sink.write(Buffer.from(l));
    await expect(sink.close()).rejects.toBeTruthy();
  });
});
