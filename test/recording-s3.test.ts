/**
 * The S3 store end to end: a real stack records into an S3-compatible server run here (s3rver on
 * 127.0.0.1), uploading in parts; the API serves the object, and a request made while the session
 * is live is held until the upload completes, then gets the whole recording.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
// @ts-expect-error s3rver ships no types
import S3rver from "s3rver";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createS3Store } from "@molecule/shared/recording/s3-store";
import { call, readyWorkspace, waitFor } from "./helpers/http.ts";
import { startStack, type Stack } from "./helpers/stack.ts";
import { openShell } from "./helpers/term-client.ts";

let s: Stack;
let server: { run(): Promise<AddressInfo>; close(): Promise<void> };
let dir: string;
let token: string;
let ws: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "molecule-s3rver-"));
  server = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: dir, configureBuckets: [{ name: "casts" }] });
  const { port } = await server.run();
  const store = createS3Store({
    bucket: "casts",
    prefix: "rec/",
    region: "us-east-1",
    endpoint: `http://127.0.0.1:${port}`,
    credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    // Small parts so the session below spans several (S3 itself needs 5 MiB).
    partBytes: 64 * 1024,
  });
  s = await startStack({ recording: { store } });
  token = (await s.org("s3")).token;
  ws = await readyWorkspace(s.url, token);
});
afterAll(async () => {
  await s?.close();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("recording into S3 (s3rver)", () => {
  it("a live request is held until the upload completes, then gets every byte in order", async () => {
    const c = await openShell(s.wsUrl, ws, { token, cols: 120 });
    const sid = c.hello!.session;
    await c.run("seq 1 30000 | sed 's/^/row /'", 30_000);
    const pending = call(s.url, "GET", `/workspaces/${ws}/terminal/sessions/${sid}/recording`, { token });
    c.send("exit\r");
    await c.closed;
    const r = await pending;
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/x-asciicast");
    const text = r.body as string;
    const lines = text.split("\n").filter(Boolean);
    expect(JSON.parse(lines[0]!)).toMatchObject({ version: 2, width: 120 });
    const out = lines
      .slice(1)
      .map((l) => JSON.parse(l) as [number, string, string])
      .filter((e) => e[1] === "o")
      .map((e) => e[2])
      .join("");
    expect(out).toBe(c.text());
    const rows = [...out.matchAll(/^row (\d+)\r$/gm)].map((m) => Number(m[1]));
    expect(rows).toEqual(Array.from({ length: 30000 }, (_, i) => i + 1));
    const row = await waitFor(async () => {
      const l = await call(s.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token });
      return l.body.sessions.find((x: { id: string }) => x.id === sid)?.recording;
    });
    expect(row).toMatchObject({ truncated: false, complete: true });
    // Larger than several parts: it went up in pieces.
    expect(row.bytes).toBeGreaterThan(4 * 64 * 1024);
  });
});
