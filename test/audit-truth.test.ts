import { randomUUID } from "node:crypto";
import * as pty from "node-pty";
import { Queue } from "bullmq";
import { desc, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  TERMINAL_QUEUE,
  auditOutboxKey,
  bullPrefix,
  createDb,
  createLogger,
  createRedis,
  createRedisWriter,
  encodeInput,
  schema,
  sessionKeys,
  workerConnectionName,
  type DbHandle,
  type TerminalJob,
} from "@molecule/shared";
import { createLocalProvider } from "../apps/terminal-worker/src/providers/index.ts";
import { createWorker, type MoleculeWorker } from "../apps/terminal-worker/src/worker.ts";
import { testUrls } from "./helpers/env.ts";
import { readyWorkspace, waitFor } from "./helpers/http.ts";
import { startStack, type Stack } from "./helpers/stack.ts";
import { startTcpProxy, type TcpProxy } from "./helpers/tcp-proxy.ts";
import { hostPidsOfSession } from "./helpers/procs.ts";
import { openShell, TermClient } from "./helpers/term-client.ts";

/**
 * The API from startStack; the terminal worker built here on a PostgreSQL connection of its own
 * through a TCP proxy, so "PostgreSQL is down" holds for the worker alone while the test (and the
 * API's sweeper) still read the database.
 */
let s: Stack;
let proxy: TcpProxy;
let workerDb: DbHandle;
let worker: MoleculeWorker;
let workerId: string;
let closeWorker: () => Promise<void>;
let token: string;
let orgId: string;
let ws: string;

beforeAll(async () => {
  s = await startStack({ worker: false, ownDatabase: true });
  const base = new URL(testUrls().databaseUrl);
  proxy = await startTcpProxy(Number(base.port || 5432), base.hostname);
  const url = new URL(base);
  url.hostname = "127.0.0.1";
  url.port = String(proxy.port);
  url.pathname = `/${(s.db.sql.options as { database: string }).database}`;
  workerDb = createDb(url.toString(), { max: 4 });
  workerId = `w-audit-${s.ns}`;
  const log = createLogger("test", process.env.TEST_LOG_LEVEL ?? "silent");
  const redisUrl = testUrls().redisUrl;
  const conns = [
    createRedis(redisUrl, { connectionName: workerConnectionName(s.ns, workerId, "cmd") }),
    createRedis(redisUrl, { connectionName: workerConnectionName(s.ns, workerId, "sub") }),
  ] as const;
  for (const c of conns) c.on("error", () => {});
  const writer = createRedisWriter({ url: redisUrl, name: workerConnectionName(s.ns, workerId, "out"), log });
  worker = createWorker({
    config: {
      ns: s.ns,
      workerId,
      capacity: 20,
      provisionConcurrency: 2,
      provisionLockMs: 5000,
      provisionTimeoutMs: 60_000,
      replayWindowBytes: 1024 * 1024,
      orphanGraceMs: 60_000,
      idleTimeoutMs: 30 * 60_000,
      maxSessionMs: 3600_000,
      drainTimeoutMs: 0,
      spareShells: 8,
      spareShellIdleMs: 60_000,
      terminal: true,
      provisioning: true,
    },
    db: workerDb,
    redis: conns[0],
    sub: conns[1],
    writer,
    log,
    providers: { local: createLocalProvider({ root: s.sandboxRoot, bwrap: "auto", shell: "/bin/bash" }) },
    spawn: pty.spawn as never,
  });
  await worker.start();
  let closed = false;
  // Closing the worker and all its Redis connections: to the API it is then dead, as after a crash.
  closeWorker = async () => {
    if (closed) return;
    closed = true;
    await worker.close();
    for (const c of conns) c.disconnect();
    await writer.close();
    await workerDb.close();
  };
  const org = await s.org("audit");
  token = org.token;
  orgId = org.orgId;
  ws = await readyWorkspace(s.url, token);
}, 60_000);
afterAll(async () => {
  await proxy?.restore();
  await closeWorker?.().catch(() => {});
  await proxy?.close();
  await s?.close();
});

const row = async (id: string) => (await s.db.db.select().from(schema.terminalSessions).where(eq(schema.terminalSessions.id, id)))[0]!;

/** Sends input as a client would, counting its bytes. */
function typer(c: TermClient) {
  let bytes = 0;
  return {
    send(text: string) {
      bytes += Buffer.byteLength(text);
      c.send(text);
    },
    get bytes() {
      return bytes;
    },
  };
}

describe("the audit row is the truth", () => {
  it("a job crafted for a session another worker holds starts nothing and leaves its row and its channels alone", async () => {
    const sessionId = randomUUID();
    await s.db.db.insert(schema.terminalSessions).values({ id: sessionId, orgId, workspaceId: ws, workerId: "w-someone-else", provider: "local" });
    const before = await row(sessionId);
    const k = sessionKeys(s.ns, sessionId);
    const heard: Buffer[] = [];
    const sub = createRedis(testUrls().redisUrl);
    await sub.subscribe(k.out);
    sub.on("messageBuffer", (_ch: Buffer, msg: Buffer) => heard.push(msg));
    const queue = new Queue<TerminalJob>(TERMINAL_QUEUE, { connection: s.redis, prefix: bullPrefix(s.ns) });
    try {
      const job = await queue.add(
        "session",
        { sessionId, workspaceId: ws, orgId, cols: 80, rows: 24, claimDeadline: Date.now() + 60_000, windowBytes: 512 * 1024, provider: "local", instanceId: null },
        { jobId: sessionId, attempts: 1, removeOnComplete: false },
      );
      await waitFor(async () => ["completed", "failed"].includes(await job.getState()), 10_000);
      expect(await job.getState()).toBe("completed");
      expect(await row(sessionId)).toEqual(before);
      // The shell started while the claim was under way (local provider) is gone too.
      await waitFor(async () => hostPidsOfSession(sessionId).length === 0, 5000);
      expect(worker.terminal!.sessions.has(sessionId)).toBe(false);
      expect(await s.redis.exists(k.meta)).toBe(0);
      // A round trip on the subscriber: anything published before now has been delivered.
      await sub.ping();
      expect(heard).toEqual([]);
    } finally {
      await queue.close();
      sub.disconnect();
    }
  });

  it("a shell whose claim fails (PostgreSQL down) is stopped before anything of it is seen: spawn_failed, no output", async () => {
    // A workspace shell opened before, so the one below can come from a spare (started at once, before the claim).
    const warm = await openShell(s.wsUrl, ws, { token });
    await warm.waitText(/[#$] $/);
    await warm.close();
    await waitFor(async () => worker.terminal!.spares.stats().ready >= 1, 10_000);
    await waitFor(async () => (await row(warm.hello!.session)).closedAt !== null, 10_000);
    const taken = worker.terminal!.spares.stats().taken;
    await proxy.down();
    try {
      const c = new TermClient(s.wsUrl, ws, { token });
      const err = await c.waitMessage("error", 15_000);
      // spawn_failed reaches the client as `internal` with its message (end-mapping.ts).
      expect(err).toMatchObject({ code: "internal", message: expect.stringContaining("could not be recorded") });
      expect(worker.terminal!.spares.stats().taken).toBe(taken + 1); // its shell did start, during the claim…
      expect(c.output.length).toBe(0); // …and not even its prompt was seen
      expect(c.hello).toBeNull();
      // The API wrote the row (its database is not behind the proxy); nothing of that session runs.
      const [latest] = await s.db.db.select().from(schema.terminalSessions).where(eq(schema.terminalSessions.workspaceId, ws)).orderBy(desc(schema.terminalSessions.openedAt)).limit(1);
      expect(latest!.workerId).toBeNull();
      await waitFor(async () => hostPidsOfSession(latest!.id).length === 0, 5000);
      await c.closed;
    } finally {
      await proxy.restore();
    }
  });

  it("input published straight on the session's channel is counted, in the live row and at the close; a session that ends while PostgreSQL is down is closed with its real reason, bytes and end time once it is back", async () => {
    const c = await openShell(s.wsUrl, ws, { token });
    const session = c.hello!.session;
    const t = typer(c);
    t.send("printf '%s\\n' \"via-$((40+2))-client\"\r");
    await c.waitText("via-42-client");
    // As someone with access to Redis would: straight onto the session's input channel.
    const injected = encodeInput(Buffer.from("printf '%s\\n' \"via-$((40+3))-redis\"\r"));
    await s.redis.publish(sessionKeys(s.ns, session).in, injected);
    await c.waitText("via-43-redis");
    const injectedBytes = injected.length - 1;
    // The live row shows it too (counts reported every 5 s while the session runs).
    const live = await waitFor(async () => {
      const r = await row(session);
      return r.bytesIn === t.bytes + injectedBytes ? r : null;
    }, 12_000, 200);
    expect(live.closedAt).toBeNull();
    expect(live.bytesOut).toBeGreaterThan(0);

    await proxy.down();
    let restoredAt = 0;
    try {
      const exitSent = Date.now();
      t.send("exit 3\r");
      expect(await c.waitMessage("exit")).toMatchObject({ code: 3 });
      const exitSeen = Date.now();
      // The close PostgreSQL refused is kept where it outlives the worker.
      const entry = await waitFor(async () => s.redis.hget(auditOutboxKey(s.ns), session), 10_000);
      expect(JSON.parse(entry)).toMatchObject({ sessionId: session, workerId, reason: "exit" });
      expect((await row(session)).closedAt).toBeNull();
      restoredAt = Date.now();
      expect(restoredAt).toBeGreaterThanOrEqual(exitSeen);
      await proxy.restore();
      // The worker's retries (1 s, then doubling) close it.
      const closed = await waitFor(async () => {
        const r = await row(session);
        return r.closedAt ? r : null;
      }, 20_000, 100);
      expect(closed).toMatchObject({ closeReason: "exit", exitCode: 3, workerId, bytesIn: t.bytes + injectedBytes, bytesOut: c.offset });
      // When the shell exited, not when the row could be written.
      expect(closed.closedAt!.getTime()).toBeGreaterThanOrEqual(exitSent - 50);
      expect(closed.closedAt!.getTime()).toBeLessThanOrEqual(exitSeen + 50);
      await waitFor(async () => (await s.redis.hexists(auditOutboxKey(s.ns), session)) === 0, 5000);
    } finally {
      if (!restoredAt) await proxy.restore();
    }
  });

  it("a worker that dies after such a session ended (PostgreSQL still down): the API's sweep applies the outbox entry, not worker_lost", async () => {
    const c = await openShell(s.wsUrl, ws, { token });
    const session = c.hello!.session;
    const t = typer(c);
    t.send("printf '%s\\n' \"last-$((1+1))-words\"\r");
    await c.waitText("last-2-words");
    await proxy.down();
    const exitSent = Date.now();
    t.send("exit\r");
    await c.waitMessage("exit");
    const exitSeen = Date.now();
    await waitFor(async () => s.redis.hget(auditOutboxKey(s.ns), session), 10_000);
    // Its last retry (at shutdown) fails too; then it is gone, connections and heartbeat with it.
    await closeWorker();
    expect((await row(session)).closedAt).toBeNull();
    // Old enough for the sweeper to judge (it leaves rows younger than the claim timeout alone).
    await s.db.sql`UPDATE terminal_sessions SET opened_at = opened_at - interval '10 minutes' WHERE id = ${session}`;
    expect(await s.api.gateway.sweep()).toBeGreaterThanOrEqual(1);
    const closed = await row(session);
    expect(closed).toMatchObject({ closeReason: "exit", exitCode: 0, workerId, bytesIn: t.bytes, bytesOut: c.offset });
    expect(closed.closedAt!.getTime()).toBeGreaterThanOrEqual(exitSent - 50);
    expect(closed.closedAt!.getTime()).toBeLessThanOrEqual(exitSeen + 50);
    expect(await s.redis.hexists(auditOutboxKey(s.ns), session)).toBe(0);
    await proxy.restore();
  });
});
