import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uniqueNs, testUrls } from "../../../test/helpers/env.ts";
import { waitFor } from "../../../test/helpers/http.ts";
import { createRedis } from "./config.ts";
import { createLogger } from "./logger.ts";
import { createRedisWriter, encodeCommand, encodeCommands, parseReplies, type RedisWriter } from "./redis-writer.ts";

const log = createLogger("test", "silent");
let r: ReturnType<typeof createRedis>;
let sub: ReturnType<typeof createRedis>;
const writers: RedisWriter[] = [];
const subs: ReturnType<typeof createRedis>[] = [];
beforeAll(() => {
  r = createRedis(testUrls().redisUrl);
  sub = createRedis(testUrls().redisUrl);
});
afterAll(async () => {
  await Promise.all(writers.map((w) => w.close()));
  r.disconnect();
  sub.disconnect();
  for (const s of subs) s.disconnect();
});

function writer(o: { queueMs?: number; url?: string; now?: () => number; confirmWindowMs?: number } = {}): { w: ReturnType<typeof createRedisWriter>; name: string } {
  const name = `${uniqueNs()}-writer`;
  const w = createRedisWriter({ url: o.url ?? testUrls().redisUrl, name, log, queueMs: o.queueMs, now: o.now, confirmWindowMs: o.confirmWindowMs });
  writers.push(w);
  return { w, name };
}

const until = (cond: () => boolean | Promise<boolean>, ms = 5000) => waitFor(async () => cond(), ms, 10);

async function collect(channel: string): Promise<Buffer[]> {
  const got: Buffer[] = [];
  sub.on("messageBuffer", (ch: Buffer, m: Buffer) => ch.toString() === channel && got.push(m));
  await sub.subscribe(channel);
  return got;
}

/** A TCP proxy to the test Redis: refuses connections until `up`; can hold Redis' answers and cut every connection. */
async function startProxy() {
  const target = new URL(testUrls().redisUrl);
  /** `held`: bytes of Redis' answers kept back while muted. */
  const state = { up: false, mute: false, held: 0 };
  const conns = new Set<net.Socket>();
  const server = net.createServer((c) => {
    if (!state.up) return c.destroy();
    const s = net.connect(Number(target.port || 6379), target.hostname);
    conns.add(c);
    c.pipe(s);
    s.on("data", (d: Buffer) => (state.mute ? (state.held += d.length) : c.write(d)));
    c.on("close", () => (conns.delete(c), s.destroy()));
    c.on("error", () => s.destroy());
    s.on("error", () => c.destroy());
  });
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
  const port = (server.address() as net.AddressInfo).port;
  return {
    state,
    url: `redis://127.0.0.1:${port}${target.pathname}`,
    cut: () => conns.forEach((c) => c.destroy()),
    close: () => (conns.forEach((c) => c.destroy()), server.close()),
  };
}

async function clientOf(name: string): Promise<string | null> {
  const list = (await r.client("LIST")) as string;
  return list.split("\n").find((l) => l.includes(` name=${name} `)) ?? null;
}

describe("RESP framing", () => {
  it("encodes a command with binary arguments and reads simple, bulk and error replies", () => {
    expect(encodeCommand(["PUBLISH", "ch", Buffer.from([0, 13, 10, 255])]).toString("latin1")).toBe(
      "*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$4\r\n\x00\r\n\xff\r\n",
    );
    const { replies, used } = parseReplies(Buffer.from("+OK\r\n$3\r\nabc\r\n-ERR no\r\n:5\r\n$-1\r\n$10\r\npart"));
    expect(replies).toEqual([
      { error: false, value: "OK" },
      { error: false, value: "abc" },
      { error: true, value: "ERR no" },
      { error: false, value: "5" },
      { error: false, value: "" },
    ]);
    // The incomplete bulk string is left for the next read.
    expect(used).toBe(Buffer.byteLength("+OK\r\n$3\r\nabc\r\n-ERR no\r\n:5\r\n$-1\r\n"));
  });

  it("passes a large argument by reference (no copy) and the rest as one buffer around it", () => {
    const big = Buffer.alloc(64 * 1024, 120);
    const parts = encodeCommands([["MULTI"], ["PUBLISH", "ch", big], ["EXEC"]]);
    expect(parts).toHaveLength(3);
    expect(parts[1]).toBe(big);
    expect(Buffer.concat(parts).toString("latin1")).toBe(
      `*1\r\n$5\r\nMULTI\r\n*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$65536\r\n${"x".repeat(65536)}\r\n*1\r\n$4\r\nEXEC\r\n`,
    );
  });
});

describe("the fire-and-forget Redis writer", () => {
  it("delivers commands in order, queued ones too, on a connection Redis sends nothing back on", async () => {
    const ch = `${uniqueNs()}:ch`;
    const got = await collect(ch);
    const { w, name } = writer();
    // Sent before the connection is up: they wait, then go in order.
    for (let i = 0; i < 50; i++) expect(w.send(["PUBLISH", ch, Buffer.from(`m${i}`)])).toBe(true);
    await until(() => w.ready);
    for (let i = 50; i < 100; i++) w.send(["PUBLISH", ch, Buffer.from(`m${i}`)]);
    await until(() => got.length === 100);
    expect(got.map(String)).toEqual(Array.from({ length: 100 }, (_, i) => `m${i}`));
    // CLIENT REPLY OFF: no reply bytes pile up for this client, and it is named.
    const info = await clientOf(name);
    expect(info).not.toBeNull();
    expect(info).toMatch(/ omem=0 /);
  });

  it("barrier() resolves only after everything sent before it has run", async () => {
    const key = `${uniqueNs()}:k`;
    const { w } = writer();
    await until(() => w.ready);
    for (let i = 1; i <= 200; i++) w.send(["SET", key, String(i)]);
    await w.barrier();
    expect(await r.get(key)).toBe("200");
    // Replies are off again after a barrier: a second one still works and nothing else answers.
    w.send(["SET", key, "last"]);
    await w.barrier();
    expect(await r.get(key)).toBe("last");
    await r.del(key);
  });

  it("a transaction runs whole, in order with single commands, a large buffer argument arriving intact", async () => {
    const key = `${uniqueNs()}:k`;
    const ch = `${uniqueNs()}:ch`;
    const got = await collect(ch);
    const { w } = writer();
    await until(() => w.ready);
    // Large enough to be passed by reference (writev) rather than copied, and used twice.
    const big = Buffer.alloc(300_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    w.send(["PUBLISH", ch, "before"]);
    w.transaction([
      ["SET", key, big],
      // A runtime error inside the transaction does not stop the commands after it.
      ["INCR", key],
      ["PUBLISH", ch, big],
    ]);
    w.send(["PUBLISH", ch, "after"]);
    await w.barrier();
    await until(() => got.length === 3);
    expect(got[0]!.toString()).toBe("before");
    expect(got[1]!.equals(big)).toBe(true);
    expect(got[2]!.toString()).toBe("after");
    expect((await r.getBuffer(key))!.equals(big)).toBe(true);
    await r.del(key);
  });

  it("a barrier pending when the connection drops is rejected, and later sends still arrive", async () => {
    const ch = `${uniqueNs()}:ch`;
    const got = await collect(ch);
    const proxy = await startProxy();
    proxy.state.up = true;
    try {
      const { w } = writer({ url: proxy.url });
      await until(() => w.ready);
      // Redis' answer to the barrier is held back, then the connection is cut.
      proxy.state.mute = true;
      const b = w.barrier();
      // Redis has run the barrier and answered: only the held answer is missing.
      await until(() => proxy.state.held > 0);
      proxy.cut();
      await expect(b).rejects.toThrow(/lost/);
      proxy.state.mute = false;
      await until(() => w.ready);
      w.send(["PUBLISH", ch, "after"]);
      await until(() => got.length === 1);
      expect(got.map(String)).toEqual(["after"]);
    } finally {
      proxy.close();
    }
  });

  it("drops what waited longer than queueMs while Redis was unreachable", async () => {
    const ch = `${uniqueNs()}:ch`;
    const got = await collect(ch);
    const proxy = await startProxy();
    try {
      let clock = 0;
      const { w } = writer({ url: proxy.url, queueMs: 150, now: () => clock });
      expect(w.send(["PUBLISH", ch, "stale"])).toBe(true);
      // "stale" has now waited 400 ms on the writer's clock.
      clock += 400;
      expect(w.ready).toBe(false);
      await expect(w.barrier()).rejects.toThrow(/not connected/);
      proxy.state.up = true;
      await until(() => w.ready);
      // (What waited less than queueMs is sent once connected: the first test.)
      w.send(["PUBLISH", ch, "after"]);
      // "stale" would have been published before "after": once "after" is here, it would be too.
      await until(() => got.length > 0 && String(got[got.length - 1]) === "after");
      expect(got.map(String)).toEqual(["after"]);
      await w.close();
      expect(w.send(["PUBLISH", ch, "after close"])).toBe(false);
    } finally {
      proxy.close();
    }
  });

  describe("after a reconnect (Redis restarted: a session's subscriber may not be back yet)", () => {
    /** A subscriber of its own that comes late, as a worker's does after a restart. */
    async function lateSubscriber(channel: string): Promise<Buffer[]> {
      const s = createRedis(testUrls().redisUrl);
      subs.push(s);
      const got: Buffer[] = [];
      s.on("messageBuffer", (ch: Buffer, m: Buffer) => ch.toString() === channel && got.push(m));
      await s.subscribe(channel);
      return got;
    }

    it("a keystroke published before its subscriber is back is sent again until heard, in order, then without replies", async () => {
      const ch = `${uniqueNs()}:in`;
      const proxy = await startProxy();
      proxy.state.up = true;
      try {
        const { w } = writer({ url: proxy.url });
        await until(() => w.ready);
        // The first connection: nobody asks, nobody listens, the publish is gone (as pub/sub is).
        w.send(["PUBLISH", ch, "before"], { needsSubscriber: true });
        await w.barrier();
        expect(w.stats.unheard).toBe(0);
        proxy.cut();
        await until(() => !w.ready);
        // Typed while the connection is down, and just after it is back.
        w.send(["PUBLISH", ch, "a"], { needsSubscriber: true });
        await until(() => w.ready);
        w.send(["PUBLISH", ch, "b"], { needsSubscriber: true });
        w.send(["PUBLISH", ch, Buffer.from([0, 13, 10, 255])], { needsSubscriber: true });
        // Nobody has heard "a" yet: it goes again, and "b" waits behind it.
        await until(() => w.stats.unheard >= 2);
        const got = await lateSubscriber(ch);
        await until(() => got.length === 3);
        expect(got.map((b) => b.toString("latin1"))).toEqual(["a", "b", "\x00\r\n\xff"]);
        // Heard once: the channel's publishes no longer ask (no reply bytes, nothing resent).
        const unheard = w.stats.unheard;
        for (let i = 0; i < 20; i++) w.send(["PUBLISH", ch, `m${i}`], { needsSubscriber: true });
        await w.barrier();
        await until(() => got.length === 23);
        expect(got.slice(3).map(String)).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
        expect(w.stats.unheard).toBe(unheard);
        expect(w.stats.unheardDropped).toBe(0);
      } finally {
        proxy.close();
      }
    });

    it("gives a publish up once it is as old as the queue limit; the next one is heard", async () => {
      const ch = `${uniqueNs()}:in`;
      const proxy = await startProxy();
      proxy.state.up = true;
      try {
        let clock = 0;
        const { w } = writer({ url: proxy.url, queueMs: 1000, now: () => clock });
        await until(() => w.ready);
        proxy.cut();
        await until(() => !w.ready);
        await until(() => w.ready);
        w.send(["PUBLISH", ch, "stale"], { needsSubscriber: true });
        await until(() => w.stats.unheard >= 1);
        clock += 1500;
        await until(() => w.stats.unheardDropped === 1);
        const got = await lateSubscriber(ch);
        w.send(["PUBLISH", ch, "fresh"], { needsSubscriber: true });
        await until(() => got.length === 1);
        expect(got.map(String)).toEqual(["fresh"]);
      } finally {
        proxy.close();
      }
    });

    it("asks only within the window after a reconnect, and never for other commands", async () => {
      const ch = `${uniqueNs()}:in`;
      const key = `${uniqueNs()}:k`;
      const proxy = await startProxy();
      proxy.state.up = true;
      try {
        let clock = 0;
        const { w } = writer({ url: proxy.url, now: () => clock, confirmWindowMs: 500 });
        await until(() => w.ready);
        proxy.cut();
        await until(() => !w.ready);
        await until(() => w.ready);
        // A plain publish and a transaction are not held or repeated, window or not.
        w.send(["PUBLISH", ch, "plain"]);
        w.transaction([["SET", key, "1"]]);
        clock += 600;
        // Past the window: sent once, no reply asked for, so nothing is counted unheard.
        w.send(["PUBLISH", ch, "late"], { needsSubscriber: true });
        await w.barrier();
        expect(await r.get(key)).toBe("1");
        expect(w.stats.unheard).toBe(0);
        await r.del(key);
      } finally {
        proxy.close();
      }
    });
  });
});
