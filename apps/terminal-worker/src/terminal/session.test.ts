import { randomUUID } from "node:crypto";
import * as pty from "node-pty";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createAuditOutbox,
  createDb,
  createHub,
  createLogger,
  createRedis,
  createRedisWriter,
  decodeOut,
  encodeControl,
  encodeSequenced,
  sessionKeys,
  type DbHandle,
  type RedisWriter,
  type TerminalJob,
  type WorkerEvent,
} from "@molecule/shared";
import { testUrls, uniqueNs } from "../../../../test/helpers/env.ts";
import { waitFor } from "../../../../test/helpers/http.ts";
import { PtySession, type SessionDeps } from "./session.ts";
import { createSpawnTurns } from "./spawn-turns.ts";
import type { SpawnPty } from "./types.ts";

const log = createLogger("test", process.env.TEST_LOG_LEVEL ?? "silent");
let redis: ReturnType<typeof createRedis>;
let sub: ReturnType<typeof createRedis>;
let writer: RedisWriter;
let db: DbHandle;
beforeAll(async () => {
  redis = createRedis(testUrls().redisUrl);
  sub = createRedis(testUrls().redisUrl);
  writer = createRedisWriter({ url: testUrls().redisUrl, name: "session-flow-test", log });
  db = createDb(testUrls().databaseUrl, { max: 1 });
  await waitFor(async () => writer.ready && sub.status === "ready", 5000, 10);
});
afterAll(async () => {
  redis.disconnect();
  sub.disconnect();
  await writer.close();
  await db.close();
});

const WINDOW = 64 * 1024;

/** A session's dependencies on this file's connections (real Redis, PostgreSQL and PTYs). */
function depsFor(ns: string, workerId: string, spawn: SpawnPty, extra: Partial<SessionDeps> = {}): SessionDeps {
  return {
    redis,
    writer,
    hub: createHub(sub, log),
    db: db.db,
    outbox: createAuditOutbox({ db: db.db, redis, ns, workerId, log }),
    workerId,
    log,
    spawn,
    spawnTurn: createSpawnTurns(),
    replayWindowBytes: 1024 * 1024,
    recentBytes: 64 * 1024,
    idleTimeoutMs: 60_000,
    maxSessionMs: 60_000,
    ...extra,
  };
}

function jobFor(sessionId: string, extra: Partial<TerminalJob> = {}): TerminalJob {
  return { sessionId, workspaceId: randomUUID(), orgId: randomUUID(), cols: 80, rows: 24, claimDeadline: Date.now() + 60_000, windowBytes: WINDOW, provider: "local", instanceId: null, ...extra };
}

/** A real PTY whose pause/resume calls are recorded (what the flow rule decided, in order). */
function recordingSpawn(flow: string[]): SpawnPty {
  return (file, args, opts) => {
    const p = pty.spawn(file, args, opts);
    const pause = p.pause.bind(p);
    const resume = p.resume.bind(p);
    p.pause = () => {
      flow.push("pause");
      pause();
    };
    p.resume = () => {
      flow.push("resume");
      resume();
    };
    return p;
  };
}

describe("PTY flow control", () => {
  it("pauses once the window is unacknowledged, resumes on an ack that makes room, pauses at once when a viewer shrinks its window", async () => {
    const ns = uniqueNs();
    const sessionId = randomUUID();
    const keys = sessionKeys(ns, sessionId);
    const flow: string[] = [];
    const deps = depsFor(ns, "w-flow", recordingSpawn(flow));
    const job = jobFor(sessionId);
    const session = new PtySession(job, keys, { file: "/bin/sh", args: ["-c", "exec yes"], env: { PATH: "/usr/bin:/bin" }, cwd: "/tmp" }, deps);
    try {
      await session.start();
      await waitFor(async () => flow.length === 1, 10_000, 5);
      expect(flow).toEqual(["pause"]);
      const atPause = session.counts.bytesOut;
      expect(atPause).toBeGreaterThanOrEqual(WINDOW);

      // Everything so far acknowledged (reads taken just before the pause may still have been flushed
      // since: the worker caps an ack at what it produced): room again, the shell is read again, and it
      // pauses at the next window.
      await redis.publish(keys.in, encodeControl({ t: "ack", offset: Number.MAX_SAFE_INTEGER }));
      await waitFor(async () => flow.length >= 2, 10_000, 5);
      expect(flow.slice(0, 2)).toEqual(["pause", "resume"]);
      await waitFor(async () => flow.length >= 3, 10_000, 5);
      expect(flow[2]).toBe("pause");
      expect(session.counts.bytesOut).toBeGreaterThanOrEqual(atPause + WINDOW);

      // A viewer acking all but a little, with a window smaller than what is still out: no room, stays paused.
      const now = session.counts.bytesOut;
      await redis.publish(keys.in, encodeControl({ t: "ack", offset: now - 100, window: 64 }));
      // The next ack (all of it, same small window) makes room: resumed, and paused again.
      await redis.publish(keys.in, encodeControl({ t: "ack", offset: Number.MAX_SAFE_INTEGER, window: 64 }));
      await waitFor(async () => flow.length >= 5, 10_000, 5);
      expect(flow.slice(3, 5)).toEqual(["resume", "pause"]);
    } finally {
      await session.end("client_closed");
      await redis.del(keys.meta, keys.log, keys.cancel);
    }
  });
});

describe("the end of a command's output", () => {
  it("output a command printed just before it exited reaches the log though the PTY was paused (the client's window full)", async () => {
    const ns = uniqueNs();
    const sessionId = randomUUID();
    const keys = sessionKeys(ns, sessionId);
    // A 4 KiB window nobody acks: the worker pauses after the first read, the rest of the 5003
    // bytes wait in the kernel's buffer, and the command exits meanwhile.
    const session = new PtySession(jobFor(sessionId, { windowBytes: 4096 }), keys, { file: "/bin/sh", args: ["-c", "head -c 5000 /dev/zero | tr '\\0' y; printf END; exit 3"], env: { PATH: "/usr/bin:/bin" }, cwd: "/tmp" }, depsFor(ns, "w-tail", pty.spawn as SpawnPty));
    try {
      await session.start();
      const end = await session.done;
      expect(end).toMatchObject({ reason: "exit", code: 3 });
      expect(session.counts.bytesOut).toBe(5003);
      const log = await redis.xrangeBuffer(keys.log, "-", "+");
      expect(Buffer.concat(log.map(([, f]) => f[1]!)).toString().endsWith("yyyEND")).toBe(true);
    } finally {
      await redis.del(keys.meta, keys.log, keys.cancel);
    }
  });
});

describe("numbered input (resync)", () => {
  /** A shell that prints each byte it gets at once (raw, no echo), and what it printed. */
  async function rawCat(holdMs: number, piped = false, extra: Partial<SessionDeps> = {}) {
    const ns = uniqueNs();
    const sessionId = randomUUID();
    const keys = sessionKeys(ns, sessionId);
    const watcher = createRedis(testUrls().redisUrl);
    const events: WorkerEvent[] = [];
    let text = "";
    watcher.on("messageBuffer", (_ch: Buffer, msg: Buffer) => {
      const m = decodeOut(msg);
      if (m?.kind === "event") events.push(m.event);
      else if (m) text += m.chunk.toString("latin1");
    });
    await watcher.subscribe(keys.out);
    const deps = depsFor(ns, "w-seq", pty.spawn as SpawnPty, { holdMs, ...extra });
    const job = jobFor(sessionId, piped ? { command: ["cat"], pty: false } : {});
    const script = piped ? "echo up; exec cat" : "stty raw -echo; echo up; exec cat";
    const session = new PtySession(job, keys, { file: "/bin/sh", args: ["-c", script], env: { PATH: "/usr/bin:/bin" }, cwd: "/tmp" }, deps);
    await session.start();
    await waitFor(async () => text.includes("up"), 10_000, 5);
    text = "";
    const stream = 0x1234_5678;
    const send = (seq: number, s: string, st = stream) => redis.publish(keys.in, encodeSequenced(st, seq, { data: Buffer.from(s) }));
    return {
      keys,
      stream,
      send,
      text: () => text,
      events,
      session,
      async close() {
        await session.end("client_closed");
        watcher.disconnect();
        await redis.del(keys.meta, keys.log, keys.cancel);
      },
    };
  }

  it("a message ahead of a missing one waits for it and asks for a resync; sent again, each is applied once, in order", async () => {
    const c = await rawCat(60_000);
    try {
      await c.send(1, "a");
      await waitFor(async () => c.text() === "a", 10_000, 5);
      await c.send(3, "c");
      await waitFor(async () => c.events.some((e) => e.kind === "resync"), 10_000, 5);
      expect(c.events.find((e) => e.kind === "resync")).toEqual({ kind: "resync", streams: [[c.stream, 1]] });
      expect(c.text()).toBe("a");
      // The API node's answer: what it kept, again (3 a second time), then what came after.
      await redis.publish(c.keys.in, encodeControl({ t: "resent", stream: c.stream, from: 2 }));
      for (const [n, s] of [[2, "b"], [3, "c"], [1, "a"], [4, "d"]] as const) await c.send(n, s);
      await waitFor(async () => c.text().length >= 4, 10_000, 5);
      // Another connection's stream starts at 1 of its own.
      await c.send(1, "x", 99);
      await c.send(5, "e");
      await waitFor(async () => c.text().length >= 6, 10_000, 5);
      expect(c.text()).toBe("abcdxe");
    } finally {
      await c.close();
    }
  });

  it("`resent` from past a gap: what is gone for good is skipped at once, and what waited is applied", async () => {
    const c = await rawCat(60_000);
    try {
      await c.send(1, "a");
      await c.send(5, "e");
      await waitFor(async () => c.events.some((e) => e.kind === "resync"), 10_000, 5);
      await redis.publish(c.keys.in, encodeControl({ t: "resent", stream: c.stream, from: 4 }));
      await c.send(4, "d");
      await waitFor(async () => c.text().length >= 3, 10_000, 5);
      expect(c.text()).toBe("ade");
    } finally {
      await c.close();
    }
  });

  it("with no answer, what waited is applied after the hold, in order", async () => {
    const c = await rawCat(200);
    try {
      await c.send(1, "a");
      // In one write: both arrive before the hold ends.
      await redis
        .pipeline()
        .publish(c.keys.in, encodeSequenced(c.stream, 4, { data: Buffer.from("d") }))
        .publish(c.keys.in, encodeSequenced(c.stream, 3, { data: Buffer.from("c") }))
        .exec();
      await waitFor(async () => c.text().length >= 3, 10_000, 5);
      expect(c.text()).toBe("acd");
      await c.send(5, "e");
      await waitFor(async () => c.text().length >= 4, 10_000, 5);
      expect(c.text()).toBe("acde");
    } finally {
      await c.close();
    }
  });

  it("a piped command (an upload) whose input has a hole for good ends, saying so, rather than read on past it", async () => {
    const c = await rawCat(200, true);
    try {
      await c.send(1, "a");
      await c.send(3, "c");
      const end = await c.session.done;
      expect(end.reason).toBe("store_unavailable");
      expect(end.message).toMatch(/input was lost/);
    } finally {
      await c.close();
    }
  });

  it("a client that counts its input: each byte reaches the shell once, whichever connection sends it again, and is acked", async () => {
    const c = await rawCat(60_000);
    const from = (seq: number, offset: number, st: number) => redis.publish(c.keys.in, encodeSequenced(st, seq, { control: encodeControl({ t: "input_from", offset }) }));
    try {
      await from(1, 0, c.stream);
      await c.send(2, "abc");
      await c.send(3, "def");
      await waitFor(async () => c.events.some((e) => e.kind === "input" && e.offset === 6), 10_000, 5);
      // A re-attach (another stream) sends again from byte 4: only what the shell lacks is written.
      await from(1, 4, 77);
      await c.send(2, "efgh", 77);
      // The first connection's last bytes, still in flight, arrive after: already there, dropped.
      await c.send(4, "gh");
      await c.send(5, "ij");
      await waitFor(async () => c.events.some((e) => e.kind === "input" && e.offset === 10), 10_000, 5);
      // The ack says the PTY has the bytes; cat's echo of them comes after it.
      await waitFor(async () => c.text().length >= 10, 10_000, 5);
      expect(c.text()).toBe("abcdefghij");
    } finally {
      await c.close();
    }
  });

  it("a counting client's acks: one at input_from, then at most one per period for keystrokes, and one at once after 256 KiB", async () => {
    const c = await rawCat(60_000, false, { inputAckMs: 400 });
    const acks = () => c.events.filter((e) => e.kind === "input").map((e) => (e as { offset: number }).offset);
    try {
      await redis.publish(c.keys.in, encodeSequenced(c.stream, 1, { control: encodeControl({ t: "input_from", offset: 0 }) }));
      await waitFor(async () => acks().length === 1, 10_000, 5);
      expect(acks()).toEqual([0]);
      // 30 keystrokes: each reaches the shell at once; the ack comes after the period, once.
      for (let i = 0; i < 30; i++) await c.send(2 + i, "k");
      await waitFor(async () => c.text().length === 30, 10_000, 5);
      await waitFor(async () => acks().length === 2, 10_000, 5);
      expect(acks()).toEqual([0, 30]);
      // An upload's burst does not wait for the period.
      await c.send(32, "u".repeat(256 * 1024));
      await waitFor(async () => acks().length === 3, 300, 5);
      expect(acks()[2]).toBe(30 + 256 * 1024);
    } finally {
      await c.close();
    }
  });

  it("a counted connection's message left waiting behind a gap is dropped once the client re-attaches (its resend has those bytes)", async () => {
    const c = await rawCat(1000, true);
    // stdin frames, as a piped command reads them: [0][length, 4 bytes][bytes]
    const frame = (t: string) => Buffer.concat([Buffer.from([0, 0, 0, 0, t.length]), Buffer.from(t)]);
    const seq = (st: number, n: number, m: { data: Buffer } | { control: Buffer }) => encodeSequenced(st, n, m);
    const from = (offset: number) => ({ control: encodeControl({ t: "input_from", offset }) });
    try {
      // One write: the first connection's 3rd message never comes, its 4th waits for it; the client
      // re-attaches (acked up to 7) and sends again from there.
      await redis
        .pipeline()
        .publish(c.keys.in, seq(c.stream, 1, from(0)))
        .publish(c.keys.in, seq(c.stream, 2, { data: frame("ab") }))
        .publish(c.keys.in, seq(c.stream, 4, { data: frame("ef") }))
        .publish(c.keys.in, seq(55, 1, from(7)))
        .publish(c.keys.in, seq(55, 2, { data: Buffer.concat([frame("cd"), frame("ef")]) }))
        .publish(c.keys.in, seq(55, 3, { data: frame("gh") }))
        .exec();
      await waitFor(async () => c.events.some((e) => e.kind === "input" && e.offset === 28), 10_000, 5);
      await waitFor(async () => c.text().includes("gh"), 10_000, 5);
      // Past the hold (1 s): the piped command was not ended for a hole, each part came once.
      const ended = await Promise.race([c.session.done.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 1500))]);
      expect(ended).toBe(false);
      for (const part of ["ab", "cd", "ef", "gh"]) expect(c.text().split(part).length, part).toBe(2);
    } finally {
      await c.close();
    }
  });
});
