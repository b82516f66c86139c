import { randomBytes, randomUUID } from "node:crypto";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import WebSocket, { WebSocketServer } from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CLOSE,
  appendChunk,
  createHub,
  createLogger,
  createRedis,
  createRedisWriter,
  decodeIn,
  encodeData,
  encodeEvent,
  sessionKeys,
  type ByteRedis,
  type Hub,
  type InMessage,
  type RedisWriter,
  type SessionEnd,
  type SessionKeys,
} from "@molecule/shared";
import { testUrls, uniqueNs } from "../../../../test/helpers/env.ts";
import { waitFor } from "../../../../test/helpers/http.ts";
import { createPresence } from "./presence.ts";
import { TerminalBridge, type Mode } from "./bridge.ts";

/**
 * The bridge on its own, on real Redis (log, live channel, subscriber hub) and a real loopback
 * WebSocket: what a re-attaching client receives while the log is read and output keeps arriving.
 */
const log = createLogger("bridge-test", "silent");
let redis: ByteRedis;
let sub: ReturnType<typeof createRedis>;
let hub: Hub;
let writer: RedisWriter;
let wss: WebSocketServer;
let url: string;
beforeAll(async () => {
  redis = createRedis(testUrls().redisUrl);
  sub = createRedis(testUrls().redisUrl);
  // Subscribing before the connection's ready check would make that check fail (subscriber mode).
  if (sub.status !== "ready") await once(sub, "ready");
  hub = createHub(sub, log);
  writer = createRedisWriter({ url: testUrls().redisUrl, name: "bridge-test", log });
  await new Promise<void>((resolve) => (writer.ready ? resolve() : writer.onReady(() => resolve())));
  wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await once(wss, "listening");
  url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
});
afterAll(async () => {
  for (const c of wss.clients) c.terminate();
  await new Promise((resolve) => wss.close(resolve));
  redis.disconnect();
  sub.disconnect();
  await writer.close();
});

/** Writes output as the worker does (log entry and live publish in one), keeping the last `keep` bytes. */
function produce(k: SessionKeys, data: Buffer, from: number, chunk: number, keep = 1 << 30): number {
  let off = from;
  for (let i = 0; i < data.length; i += chunk) {
    const part = data.subarray(i, i + chunk);
    appendChunk(writer, k, encodeData(off, part), off, Math.max(0, off + part.length - keep), 60_000);
    off += part.length;
  }
  return off;
}

interface Seen {
  bytes: Buffer[];
  messages: { type: string; [k: string]: unknown }[];
  /** When the last JSON message (v1) arrived. */
  lastMessageAt: number;
  /** Most output the client held unacknowledged at any moment (v1). */
  maxInFlight: number;
  closed: Promise<number>;
  client: WebSocket;
  bridge: TerminalBridge;
}

/** A client re-attaching at `from`: v1 clients ack every frame at once. */
async function attach(k: SessionKeys, o: { mode: Mode; from: number; windowBytes: number; endedAlready?: SessionEnd; inputFrom?: number }): Promise<Seen> {
  const serverSide = once(wss, "connection") as Promise<[WebSocket]>;
  const client = new WebSocket(url);
  const seen: Omit<Seen, "bridge"> & { bridge?: TerminalBridge } = { bytes: [], messages: [], lastMessageAt: 0, maxInFlight: 0, closed: once(client, "close").then(([code]) => code as number), client };
  let received = o.from;
  client.on("message", (data, isBinary) => {
    const buf = data as Buffer;
    if (!isBinary) {
      seen.messages.push(JSON.parse(buf.toString()));
      seen.lastMessageAt = performance.now();
      return;
    }
    seen.bytes.push(buf);
    received += buf.length;
    // Acks are sent on receipt, so what the bridge has in flight is at most what arrived since the last one.
    seen.maxInFlight = Math.max(seen.maxInFlight, buf.length);
    if (o.mode === "v1") client.send(JSON.stringify({ type: "ack", offset: received }));
  });
  await once(client, "open");
  const [sock] = await serverSide;
  const bridge = new TerminalBridge(
    sock,
    { sessionId: randomUUID(), workspaceId: randomUUID(), keys: k, mode: o.mode, from: o.from, cols: 80, rows: 24, isNew: false, workerId: "w-test", endedAlready: o.endedAlready ?? null, role: "controller", who: { label: null, address: null, since: new Date().toISOString() }, inputFrom: o.inputFrom ?? null },
    {
      redis,
      writer,
      hub,
      log,
      windowBytes: o.windowBytes,
      claimTimeoutMs: 10_000,
      inputBytesPerSec: 1 << 20,
      inputMsgsPerSec: 10_000,
      control: { cancel: async () => {}, detached: () => {}, closed: () => {} },
      presence: createPresence({ redis, writer, log, ns: uniqueNs(), nodeId: "api-test" }),
    },
  );
  seen.bridge = bridge;
  await bridge.start();
  return seen as Seen;
}

/** The worker's side of a session: every message published on its input channel, decoded. */
async function workerSide(k: SessionKeys): Promise<{ worker: ReturnType<typeof createRedis>; got: InMessage[] }> {
  const worker = createRedis(testUrls().redisUrl);
  const got: InMessage[] = [];
  worker.on("messageBuffer", (_ch: Buffer, m: Buffer) => {
    const d = decodeIn(m);
    if (d) got.push(d);
  });
  await worker.subscribe(k.in);
  return { worker, got };
}

describe("TerminalBridge", () => {
  it("re-attach: the log and the output arriving while it is read reach the client once each, in order, then the exit", async () => {
    const k = sessionKeys(uniqueNs(), randomUUID());
    const all = randomBytes(600_000);
    // More than one log read (256 KiB each) is waiting before the client comes back...
    let end = produce(k, all.subarray(0, 400_000), 0, 1000);
    await writer.barrier();
    const seen = await attach(k, { mode: "v1", from: 0, windowBytes: 1 << 20 });
    // ...and the shell keeps writing while the bridge catches up.
    end = produce(k, all.subarray(400_000), end, 1000);
    writer.send(["PUBLISH", k.out, encodeEvent({ kind: "end", end: { reason: "exit", offset: end, code: 7 } })]);
    expect(await seen.closed).toBe(CLOSE.normal);
    // The close follows the exit at once, though the client's acks had its socket throttled (paused):
    // not after the 5 s a client that never answers the close handshake is given.
    expect(performance.now() - seen.lastMessageAt).toBeLessThan(2500);
    expect(Buffer.concat(seen.bytes).equals(all)).toBe(true);
    expect(seen.messages).toEqual([
      { type: "hello", session: expect.any(String), offset: 0, cols: 80, rows: 24 },
      { type: "exit", code: 7, signal: null },
    ]);
  });

  it("a small window: output goes only as fast as the client acks, and the end waits for the last byte", async () => {
    const k = sessionKeys(uniqueNs(), randomUUID());
    const all = randomBytes(300_000);
    const end = produce(k, all, 0, 4000);
    await writer.barrier();
    const seen = await attach(k, { mode: "v1", from: 0, windowBytes: 64 * 1024, endedAlready: { reason: "exit", offset: end, code: 0 } });
    expect(await seen.closed).toBe(CLOSE.normal);
    expect(Buffer.concat(seen.bytes).equals(all)).toBe(true);
    expect(seen.maxInFlight).toBeLessThanOrEqual(64 * 1024);
    expect(seen.messages.at(-1)).toEqual({ type: "exit", code: 0, signal: null });
  });

  it("output older than the log holds is reported as a gap, and the rest follows", async () => {
    const k = sessionKeys(uniqueNs(), randomUUID());
    const all = randomBytes(300_000);
    const end = produce(k, all, 0, 1000, 100_000);
    await writer.barrier();
    const seen = await attach(k, { mode: "v1", from: 0, windowBytes: 1 << 20, endedAlready: { reason: "exit", offset: end, code: 0 } });
    expect(await seen.closed).toBe(CLOSE.normal);
    const gap = seen.messages.find((m) => m.type === "gap") as { from: number; to: number } | undefined;
    expect(gap?.from).toBe(0);
    expect(gap?.to).toBeGreaterThanOrEqual(200_000 - 1000);
    expect(Buffer.concat(seen.bytes).equals(all.subarray(gap!.to))).toBe(true);
  });

  it("raw: bytes count as read once the socket took them; every byte arrives, then the close", async () => {
    const k = sessionKeys(uniqueNs(), randomUUID());
    const all = randomBytes(300_000);
    const end = produce(k, all, 10_000, 4000) - 10_000;
    await writer.barrier();
    const seen = await attach(k, { mode: "raw", from: 10_000, windowBytes: 64 * 1024, endedAlready: { reason: "exit", offset: end + 10_000, code: 0 } });
    expect(await seen.closed).toBe(CLOSE.normal);
    expect(Buffer.concat(seen.bytes).equals(all)).toBe(true);
    expect(seen.messages).toEqual([]);
  });

  it("a re-attach that missed the end (published between its first read and its subscription) ends once it reads the state again", async () => {
    const k = sessionKeys(uniqueNs(), randomUUID());
    const all = randomBytes(50_000);
    const end = produce(k, all, 0, 1000);
    await writer.barrier();
    // Read as running: no end known, and none will be published any more.
    const seen = await attach(k, { mode: "v1", from: 0, windowBytes: 1 << 20 });
    seen.bridge.recheck({ workspaceId: null, orgId: null, state: "ended", workerId: "w-test", pid: null, cols: 80, rows: 24, createdAt: null, piped: false, end: { reason: "exit", offset: end, code: 3 }, corrupt: [] });
    expect(await seen.closed).toBe(CLOSE.normal);
    expect(Buffer.concat(seen.bytes).equals(all)).toBe(true);
    expect(seen.messages.at(-1)).toEqual({ type: "exit", code: 3, signal: null });
  });

  it("a worker's resync: what this connection sent after the worker's last is sent again, behind where it starts", async () => {
    const k = sessionKeys(uniqueNs(), randomUUID());
    const { worker, got } = await workerSide(k);
    const seen = await attach(k, { mode: "v1", from: 0, windowBytes: 1 << 20 });
    try {
      for (const c of ["a", "b", "c"]) {
        seen.client.send(Buffer.from(c), { binary: true });
        // One publish each (frames handled in one go would be coalesced).
        await waitFor(async () => got.filter((m) => m.kind === "input").length >= ["a", "b", "c"].indexOf(c) + 1, 5000, 5);
      }
      const stream = got[0]!.stream!;
      expect(got.map((m) => [m.seq, m.kind === "input" ? m.data.toString() : null])).toEqual([[1, "a"], [2, "b"], [3, "c"]]);
      writer.send(["PUBLISH", k.out, encodeEvent({ kind: "resync", streams: [[7, 9], [stream, 1]] })]);
      await waitFor(async () => got.length >= 6, 5000, 5);
      expect(got.slice(3)).toEqual([
        { kind: "control", control: { t: "resent", stream, from: 2 } },
        { kind: "input", data: Buffer.from("b"), stream, seq: 2 },
        { kind: "input", data: Buffer.from("c"), stream, seq: 3 },
      ]);
    } finally {
      worker.disconnect();
      seen.client.close();
    }
  });

  it("a client that counts its input: its stream starts by saying where, and the worker's acks reach it", async () => {
    const k = sessionKeys(uniqueNs(), randomUUID());
    const { worker, got } = await workerSide(k);
    const seen = await attach(k, { mode: "v1", from: 0, windowBytes: 1 << 20, inputFrom: 5 });
    try {
      seen.client.send(Buffer.from("xyz"), { binary: true });
      await waitFor(async () => got.length >= 2, 5000, 5);
      expect(got.slice(0, 2)).toMatchObject([
        { kind: "control", control: { t: "input_from", offset: 5 }, seq: 1 },
        { kind: "input", data: Buffer.from("xyz"), seq: 2 },
      ]);
      writer.send(["PUBLISH", k.out, encodeEvent({ kind: "input", offset: 8 })]);
      await waitFor(async () => seen.messages.some((m) => m.type === "input_ack"), 5000, 5);
      expect(seen.messages.find((m) => m.type === "input_ack")).toEqual({ type: "input_ack", offset: 8 });
      // hello said that this server counts, and from where (a client without input_from gets no such field: above).
      await waitFor(async () => seen.messages.some((m) => m.type === "hello"), 5000, 5);
      expect(seen.messages.find((m) => m.type === "hello")).toMatchObject({ type: "hello", input_from: 5 });
    } finally {
      worker.disconnect();
      seen.client.close();
    }
  });
});
