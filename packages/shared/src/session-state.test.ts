import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testUrls, uniqueNs } from "../../../test/helpers/env.ts";
import { waitFor } from "../../../test/helpers/http.ts";
import { decodeOut } from "./bus-codec.ts";
import type { SessionEnd } from "./bus-messages.ts";
import { createRedis } from "./config.ts";
import { sessionKeys } from "./redis-keys.ts";
import {
  canTransition,
  ENDED_TTL_MS,
  parseCancel,
  parseSessionMeta,
  PENDING_META_TTL_MS,
  readSessionMeta,
  recordCancel,
  recordEnded,
  recordPending,
  recordReseeded,
  recordRunning,
  recordSize,
  execWrites,
  type SessionState,
} from "./session-state.ts";

let redis: ReturnType<typeof createRedis>;
let sub: ReturnType<typeof createRedis>;
beforeAll(() => {
  redis = createRedis(testUrls().redisUrl);
  sub = createRedis(testUrls().redisUrl);
});
afterAll(() => {
  redis.disconnect();
  sub.disconnect();
});

const SESSION = "6f1c0a52-8f0e-4a53-9d1b-2a8d5d7a0c11";
const WORKSPACE = "0b7e1f8e-3a3c-4a0e-8a52-51a2b5c9e0d4";
const ORG = "a3f1c2d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d";

describe("session state", () => {
  it("a session's life, written through its owner, reads back typed; every step is an allowed transition", async () => {
    const keys = sessionKeys(uniqueNs(), SESSION);
    const seen: SessionState[] = [];
    const step = async () => {
      const meta = await readSessionMeta(redis, keys);
      expect(meta.corrupt).toEqual([]);
      if (meta.state) seen.push(meta.state);
      return meta;
    };

    const tx = recordPending(redis.multi(), keys, { workspaceId: WORKSPACE, orgId: ORG, cols: 120, rows: 40, createdAt: 1_700_000_000_000 });
    // The write only adds commands to the caller's MULTI: nothing reaches Redis before exec.
    expect(await redis.exists(keys.meta)).toBe(0);
    await tx.exec();
    const pending = await step();
    expect(pending).toMatchObject({ workspaceId: WORKSPACE, orgId: ORG, state: "pending", cols: 120, rows: 40, createdAt: 1_700_000_000_000, workerId: null, end: null });
    const pendingTtl = await redis.pttl(keys.meta);
    expect(pendingTtl).toBeGreaterThan(PENDING_META_TTL_MS - 60_000);

    await recordRunning(redis.multi(), keys, { workerId: "w-1", pid: 4242 }).exec();
    expect(await step()).toMatchObject({ state: "running", workerId: "w-1", pid: 4242, cols: 120 });
    await execWrites(recordSize(redis.pipeline(), keys, { cols: 90, rows: 30 }));
    expect(await step()).toMatchObject({ cols: 90, rows: 30 });

    // A Redis that restarted empty: the re-seed writes the whole running identity again.
    await redis.del(keys.meta);
    await execWrites(recordReseeded(redis.pipeline(), keys, { workspaceId: WORKSPACE, orgId: ORG, workerId: "w-1", pid: 4242 }));
    expect(await step()).toMatchObject({ workspaceId: WORKSPACE, orgId: ORG, state: "running", workerId: "w-1", pid: 4242 });

    // The end is stored and announced together: a subscriber gets the same end the hash holds.
    const events: Buffer[] = [];
    sub.on("messageBuffer", (channel: Buffer, message: Buffer) => {
      if (channel.toString() === keys.out) events.push(message);
    });
    await sub.subscribe(keys.out);
    await redis.set(keys.log, "x");
    const end: SessionEnd = { reason: "exit", offset: 12, code: 0, signal: null };
    await recordEnded(redis.multi(), keys, end, { expireLog: true }).exec();
    const ended = await step();
    expect(ended.end).toEqual(end);
    await waitFor(async () => events.length === 1, 5000);
    expect(decodeOut(events[0]!)).toEqual({ kind: "event", event: { kind: "end", end } });
    for (const key of [keys.meta, keys.log, keys.cancel]) {
      const ttl = await redis.pttl(key);
      expect(ttl).toBeGreaterThan(ENDED_TTL_MS - 60_000);
      expect(ttl).toBeLessThanOrEqual(ENDED_TTL_MS);
    }
    expect(parseCancel(await redis.get(keys.cancel))).toBe("exit");
    await sub.unsubscribe(keys.out);

    expect(seen[0]).toBe("pending");
    for (let i = 1; i < seen.length; i++) expect(canTransition(seen[i - 1]!, seen[i]!)).toBe(true);
    expect(seen[seen.length - 1]).toBe("ended");
    expect(canTransition("ended", "running")).toBe(false);
    expect(canTransition("ended", "pending")).toBe(false);
    await redis.del(keys.meta, keys.log, keys.cancel);
  });

  it("a session that never got a shell ends from pending and leaves the output log alone", async () => {
    const keys = sessionKeys(uniqueNs(), SESSION);
    await recordPending(redis.multi(), keys, { workspaceId: WORKSPACE, orgId: ORG, cols: 80, rows: 24, createdAt: 1 }).exec();
    await redis.set(keys.log, "x");
    const end: SessionEnd = { reason: "spawn_failed", offset: 0, message: "no shell" };
    await recordEnded(redis.multi(), keys, end, { expireLog: false }).exec();
    expect((await readSessionMeta(redis, keys)).end).toEqual(end);
    expect(await redis.pttl(keys.log)).toBe(-1);
    await redis.del(keys.meta, keys.log, keys.cancel);
  });

  it("a corrupt hash is read field by field: invalid fields read as absent and are named, never cast", async () => {
    const keys = sessionKeys(uniqueNs(), SESSION);
    // JSON that is not a session end (it used to be cast to SessionEnd and handed to the client).
    await redis.hset(keys.meta, { ws: WORKSPACE, org: ORG, state: "claimed-ish", cols: "wide", rows: "0", end: JSON.stringify({ reason: "bored", offset: -1 }) });
    const meta = await readSessionMeta(redis, keys);
    expect(meta).toMatchObject({ workspaceId: WORKSPACE, orgId: ORG, state: null, cols: null, rows: null, end: null });
    expect(meta.corrupt.sort()).toEqual(["cols", "end", "rows", "state"]);
    expect(parseSessionMeta({ end: "{not json" })).toMatchObject({ end: null, corrupt: ["end"] });
    // A key that does not exist is no session at all, and nothing corrupt.
    expect(await readSessionMeta(redis, sessionKeys(uniqueNs(), SESSION))).toMatchObject({ workspaceId: null, state: null, corrupt: [] });
    await redis.del(keys.meta);
  });

  it("the cancel key: the API's cancel is what a worker then reads; a foreign value is a client close", async () => {
    const keys = sessionKeys(uniqueNs(), SESSION);
    expect(parseCancel(await redis.get(keys.cancel))).toBeNull();
    await execWrites(recordCancel(redis.pipeline(), keys, "workspace_deleted"));
    expect(parseCancel(await redis.get(keys.cancel))).toBe("workspace_deleted");
    expect(await redis.pttl(keys.cancel)).toBeGreaterThan(ENDED_TTL_MS - 60_000);
    expect(parseCancel("something else")).toBe("client_closed");
    await redis.del(keys.cancel);
  });

  it("execWrites rejects with a command's error, as an awaited single command would", async () => {
    const keys = sessionKeys(uniqueNs(), SESSION);
    await redis.set(keys.meta, "not a hash");
    await expect(execWrites(recordSize(redis.pipeline(), keys, { cols: 80, rows: 24 }))).rejects.toThrow(/WRONGTYPE/);
    await redis.del(keys.meta);
  });
});
