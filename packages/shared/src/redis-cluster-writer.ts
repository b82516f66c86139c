import net from "node:net";
import tls from "node:tls";
import { Cluster } from "ioredis";
import { connectionSettings, type RedisTarget } from "./config.ts";
import { keySlot } from "./key-slot.ts";
import type { Logger } from "./logger.ts";
import { createRedisWriter, encodeCommand, encodeCommands, type Command, type RedisWriter, type RedisWriterOptions, type UnheardStats, UNHEARD_RETRY_MS } from "./redis-writer.ts";

/** The byte path's writer for a target: the single-node one (replies off), or this file's on a cluster. */
export function createWriterFor(target: RedisTarget, o: Omit<RedisWriterOptions, "url">): RedisWriter {
  return target.cluster ? createClusterWriter({ ...o, target }) : createRedisWriter({ ...o, url: target.url });
}

/**
 * The byte path's writer on a Redis Cluster: one connection per primary, each
 * command routed by its key's slot (a session's keys and channels share one
 * hash tag, so one slot and one shard).
 *
 * Unlike the single-node writer it keeps replies on. Without them a MOVED or
 * ASK (a slot migrated, a replica promoted) is silent and the command is lost;
 * with them every unit (a command, or a MULTI…EXEC) is answered, and one that
 * was redirected — or was in flight on a connection that dropped — is sent
 * again. Order per slot holds: while any unit of a slot is unanswered after a
 * redirect, later units of that slot wait, and then all go out in the order
 * they were first submitted; a slot's units are never outstanding on two nodes
 * at once. A slot that was redirected in the last CAREFUL_MS, and every
 * needsSubscriber publish, goes one unit at a time (the next is sent once the
 * last is answered): a node's answer can change between two pipelined units
 * (an importing node refuses one with TRYAGAIN and, its migration just ended,
 * runs the next; a subscriber arrives between two publishes), and a later
 * append that runs first makes every earlier one's XADD fail — bytes lost. A
 * slot served as before needs no such care: a node that starts refusing one
 * keeps refusing those pipelined behind it. The cost is a reply read per unit
 * (bench: `--redis cluster`), and a round trip per unit while a slot moves.
 *
 * Resending is safe for what goes through here: an output append whose log
 * entry is already there fails on its XADD id (the rest of the transaction
 * runs, and readers drop the second publish by offset); an input publish
 * repeated after a lost connection is, like the single-node writer's, at most
 * a keystroke seen twice — it is only resent when its connection dropped
 * before the reply, never after a MOVED/ASK (which means it did not run).
 */
export interface ClusterWriterOptions {
  target: RedisTarget;
  name: string;
  log: Logger;
  queueBytes?: number;
  queueMs?: number;
  now?: () => number;
}

interface Unit {
  slot: number;
  parts: Buffer[];
  bytes: number;
  /** Replies this unit gets (MULTI + each command + EXEC for a transaction). */
  expect: number;
  at: number;
  /** Node to send to with ASKING first (an ASK redirect), once. */
  asking: string | null;
  /** Back in its slot's line after a redirect or a lost connection (goes ahead of units first sent later). */
  redone: boolean;
  /** Submission order: a slot's units run in this order. */
  seq: number;
  /** A publish that must reach a subscriber (send's needsSubscriber). */
  needsSubscriber?: boolean;
  barrier?: { resolve(): void; reject(err: Error): void };
}

/** Errors that mean "not run here, run it elsewhere or later". */
const REDIRECT = /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN|LOADING|MASTERDOWN|READONLY)\b/;

/**
 * Parses one RESP2 reply at `at`: where it ends and, for a top-level error, its
 * text. Errors inside arrays (a failed XADD inside EXEC) are not redirects.
 */
export function skipReply(buf: Buffer, at: number): { end: number; error: string | null; int?: number } | null {
  const eol = buf.indexOf("\r\n", at, "latin1");
  if (eol < 0) return null;
  const type = buf[at];
  const line = buf.toString("latin1", at + 1, eol);
  if (type === 0x3a /* : */) return { end: eol + 2, error: null, int: Number(line) };
  if (type === 0x2b /* + */) return { end: eol + 2, error: null };
  if (type === 0x2d /* - */) return { end: eol + 2, error: buf.toString("utf8", at + 1, eol) };
  if (type === 0x24 /* $ */) {
    const n = Number(line);
    if (n < 0) return { end: eol + 2, error: null };
    return buf.length < eol + 2 + n + 2 ? null : { end: eol + 2 + n + 2, error: null };
  }
  if (type === 0x2a /* * */) {
    const n = Number(line);
    let end = eol + 2;
    for (let i = 0; i < n; i++) {
      const r = skipReply(buf, end);
      if (!r) return null;
      end = r.end;
    }
    return { end, error: null };
  }
  throw new Error(`unexpected reply type ${JSON.stringify(String.fromCharCode(type ?? 0))}`);
}

/** Commands whose first argument is the key (or sharded channel) they route by: all the byte path sends. */
/**
 * Every channel published through a writer is a per-session one (hash-tagged): on a
 * cluster its PUBLISH becomes SPUBLISH, so it stays on the session's shard (and a
 * sharded subscriber gets it) whichever caller wrote it.
 */
function sharded(args: Command): Command {
  return String(args[0]).toUpperCase() === "PUBLISH" ? ["SPUBLISH", ...args.slice(1)] : args;
}

const KEY_FIRST = new Set(["XADD", "PEXPIRE", "EXPIRE", "SPUBLISH", "SET", "DEL", "HSET", "RPUSH", "INCR"]);

function keyOf(args: Command): string | Buffer {
  const name = String(args[0]).toUpperCase();
  const key = args[1];
  if (!KEY_FIRST.has(name) || key === undefined) throw new Error(`redis cluster writer: cannot route ${name} by slot (PUBLISH is SPUBLISH on a cluster)`);
  return key;
}

const BARRIER_TIMEOUT_MS = 5000;
/** How long after a redirect (or a lost connection) a slot's units go one at a time. */
const CAREFUL_MS = 2000;

const sizeOf = (parts: readonly Buffer[]) => parts.reduce((n, p) => n + p.length, 0);

/** What the writer did, for tests and the benchmark. */
export interface ClusterWriterStats extends UnheardStats {
  /** Units (a command or a MULTI…EXEC) sent, counting each resend. */
  sent: number;
  /** Units answered MOVED or ASK (a slot elsewhere). */
  redirected: number;
  /** Units sent again after a redirect or a lost connection. */
  resent: number;
}

export function createClusterWriter(o: ClusterWriterOptions): RedisWriter & { stats: ClusterWriterStats } {
  if (!o.target.cluster) throw new Error("createClusterWriter needs a cluster target");
  const settings = connectionSettings(o.target.url);
  const maxQueue = o.queueBytes ?? 4 * 1024 * 1024;
  const maxAge = o.queueMs ?? 3000;
  const now = o.now ?? (() => performance.now());
  const log = o.log.child({ conn: o.name });
  const stats: ClusterWriterStats = { sent: 0, redirected: 0, resent: 0, unheard: 0, unheardDropped: 0 };
  // The slot map only: no command of the byte path goes through it.
  const topology = new Cluster(o.target.cluster, {
    redisOptions: { ...(settings.username ? { username: settings.username } : {}), ...(settings.password ? { password: settings.password } : {}), ...(settings.tls ? { tls: settings.tls } : {}), connectionName: `${o.name}:map` },
    slotsRefreshInterval: 1000,
    clusterRetryStrategy: (n) => Math.min(100 * n, 2000),
  });
  topology.on("error", (err: Error) => log.debug({ err }, "redis cluster writer: topology connection error"));

  let closed = false;
  let mapReady = false;
  /** What a node last answered to the connection's set-up when it refused it (WRONGPASS, NOPERM…). */
  let refusal: string | null = null;
  /** Owners learnt from MOVED before the next refresh says so too. */
  const moved = new Map<number, string>();
  /** Units dispatched (queued or in flight) and not yet answered, per slot. */
  const outstanding = new Map<number, number>();
  /** Slots waiting for their outstanding units to be answered before anything more goes out: units in order. */
  const unsettled = new Map<number, Unit[]>();
  /**
   * The node a slot's outstanding units went to. All of them go to one node: a unit bound for
   * another (the slot moved, or an ASK sent one unit to the importing node) waits until they are
   * answered, because sent beside them it could run first on its node. An output append that
   * overtakes an earlier one makes the earlier one's XADD fail as "already there": a byte lost.
   */
  const outstandingAt = new Map<number, string>();
  /** Slots redirected lately, with when their last redirect was: their units go one at a time. */
  const unstable = new Map<number, number>();
  const markUnstable = (slot: number) => unstable.set(slot, now());
  /** Whether `u` waits for its slot's outstanding units to be answered before it goes. */
  const careful = (u: Unit): boolean => {
    if (u.needsSubscriber) return true;
    const at = unstable.get(u.slot);
    if (at === undefined) return false;
    if (now() - at < CAREFUL_MS) return true;
    unstable.delete(u.slot);
    return false;
  };
  const conns = new Map<string, NodeConn>();
  const readyListeners = new Set<(affects?: (key: string) => boolean) => void>();
  const drainListeners = new Set<() => void>();

  const ownerOf = (slot: number): string | null => moved.get(slot) ?? topology.slots[slot]?.[0] ?? null;

  class NodeConn {
    socket: net.Socket | null = null;
    ready = false;
    attempt = 0;
    retry: NodeJS.Timeout | null = null;
    /** Written, awaiting replies, oldest first; `got` counts the replies of the first. */
    inflight: Unit[] = [];
    got = 0;
    redirect: string | null = null;
    queue: Unit[] = [];
    queued = 0;
    pending: Buffer = Buffer.alloc(0);
    constructor(readonly key: string) {
      this.connect();
    }
    connect(): void {
      if (closed) return;
      const i = this.key.lastIndexOf(":");
      const host = this.key.slice(0, i);
      const port = Number(this.key.slice(i + 1));
      const s = settings.tls ? tls.connect({ host, port, servername: settings.tls.servername }) : net.connect({ host, port });
      this.socket = s;
      s.setNoDelay(true);
      let handshake = 0;
      s.once(settings.tls ? "secureConnect" : "connect", () => {
        const cmds: string[][] = [];
        if (settings.password) cmds.push(settings.username ? ["AUTH", settings.username, settings.password] : ["AUTH", settings.password]);
        cmds.push(["CLIENT", "SETNAME", o.name], ["PING"]);
        handshake = cmds.length;
        for (const c of cmds) s.write(encodeCommand(c));
      });
      s.on("data", (chunk: Buffer) => {
        this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
        let at = 0;
        try {
          for (;;) {
            const r = skipReply(this.pending, at);
            if (!r) break;
            at = r.end;
            if (handshake > 0) {
              if (r.error) {
                if (refusal !== r.error) log.error({ node: this.key, error: r.error }, "redis cluster writer: a node refused the connection set-up (credentials or ACL?)");
                refusal = r.error;
                s.destroy();
                return;
              }
              if (--handshake === 0) this.becomeReady();
              continue;
            }
            this.onReply(r.error, r.int);
          }
        } catch (err) {
          log.warn({ err, node: this.key }, "redis cluster writer: unreadable reply");
          s.destroy();
          return;
        }
        this.pending = this.pending.subarray(at);
      });
      s.on("drain", () => {
        for (const l of drainListeners) l();
      });
      s.on("error", (err) => log.debug({ err, node: this.key }, "redis cluster writer: connection error"));
      s.on("close", () => {
        if (this.socket === s) this.socket = null;
        const was = this.ready;
        this.ready = false;
        this.pending = Buffer.alloc(0);
        this.got = 0;
        this.redirect = null;
        // In flight: may or may not have run. Sent again (where the slot is now) once its slot settles.
        const lost = this.inflight;
        this.inflight = [];
        for (const u of lost) {
          if (u.barrier) {
            u.barrier.reject(new Error("redis connection lost"));
            done(u);
          } else {
            // Where it goes next (a promoted replica?) may refuse one and run the next.
            markUnstable(u.slot);
            redo(u);
          }
        }
        if (was) log.warn({ node: this.key }, "redis cluster writer: connection lost");
        if (closed) return;
        topology.refreshSlotsCache();
        const delay = Math.min(50 * ++this.attempt, 1000);
        this.retry = setTimeout(() => this.connect(), delay);
        this.retry.unref();
      });
    }
    becomeReady(): void {
      this.ready = true;
      refusal = null;
      this.attempt = 0;
      // Listeners first (a worker re-appends its sessions' recent output): older entries
      // go out before what waited in the queue, so a log the new primary lacks is filled in order.
      const affects = (key: string) => ownerOf(keySlot(key)) === this.key;
      for (const l of readyListeners) l(affects);
      const q = this.queue;
      this.queue = [];
      this.queued = 0;
      const oldest = now() - maxAge;
      let dropped = 0;
      for (const u of q) {
        if (u.at < oldest && !u.barrier) {
          dropped++;
          done(u);
        } else this.write(u);
      }
      if (dropped) log.warn({ node: this.key, dropped }, "redis cluster writer: dropped commands older than the queue limit");
    }
    /** Queued while not ready (bounded); false when the queue is full. */
    submit(u: Unit): boolean {
      if (this.ready && this.socket) {
        this.write(u);
        return true;
      }
      if (this.queued + u.bytes > maxQueue) return false;
      this.queue.push(u);
      this.queued += u.bytes;
      return true;
    }
    write(u: Unit): void {
      const s = this.socket!;
      stats.sent++;
      this.inflight.push(u);
      if (u.parts.length === 1) s.write(u.parts[0]!);
      else {
        s.cork();
        for (const p of u.parts) s.write(p);
        s.uncork();
      }
    }
    onReply(error: string | null, int: number | undefined): void {
      const u = this.inflight[0];
      if (!u) throw new Error("reply without a command");
      if (error && this.redirect === null && REDIRECT.test(error)) this.redirect = error;
      if (++this.got < u.expect) return;
      this.inflight.shift();
      this.got = 0;
      const r = this.redirect;
      this.redirect = null;
      if (!r) {
        // A publish nobody heard, while its subscriber follows the slot to its new primary: again
        // shortly, ahead of what came after it, until heard or as old as the queue limit.
        if (u.needsSubscriber && int === 0 && now() - u.at < maxAge) {
          stats.unheard++;
          // (The slot has likely just moved: its other units go carefully too.)
          markUnstable(u.slot);
          redo(u, UNHEARD_RETRY_MS);
          return;
        }
        if (u.needsSubscriber && int === 0) {
          stats.unheardDropped++;
          log.warn({ node: this.key, age_ms: Math.round(now() - u.at) }, "redis cluster writer: a publish no subscriber heard, dropped after the queue limit");
        }
        u.barrier?.resolve();
        done(u);
        return;
      }
      const [kind, , to] = r.split(" ");
      markUnstable(u.slot);
      if (kind === "MOVED" || kind === "ASK") stats.redirected++;
      if (kind === "MOVED" && to) {
        moved.set(u.slot, to);
        topology.refreshSlotsCache();
      }
      if (kind === "ASK" && to) {
        // ASKING once, for this unit only: the slot is still the source's until the migration ends.
        u.asking = to;
      } else u.asking = null;
      redo(u, kind === "MOVED" || kind === "ASK" ? 0 : 100);
    }
    /** Units queued here whose slot is now another node's: taken back, to be sent there in order. */
    reroute(): void {
      const keep: Unit[] = [];
      for (const u of this.queue) {
        if (u.asking === null && ownerOf(u.slot) !== this.key) {
          this.queued -= u.bytes;
          redo(u);
        } else keep.push(u);
      }
      this.queue = keep;
    }
    close(): Promise<void> {
      if (this.retry) clearTimeout(this.retry);
      const s = this.socket;
      if (!s) return Promise.resolve();
      return new Promise<void>((resolve) => {
        s.once("close", () => resolve());
        s.end();
        setTimeout(() => s.destroy(), 1000).unref();
      });
    }
  }

  function conn(key: string): NodeConn {
    let c = conns.get(key);
    if (!c) {
      c = new NodeConn(key);
      conns.set(key, c);
    }
    return c;
  }

  /** One outstanding unit of `slot` fewer; true when none is left. */
  function release(slot: number): boolean {
    const n = (outstanding.get(slot) ?? 1) - 1;
    if (n > 0) {
      outstanding.set(slot, n);
      return false;
    }
    outstanding.delete(slot);
    outstandingAt.delete(slot);
    return true;
  }

  function done(u: Unit): void {
    if (release(u.slot)) settle(u.slot);
  }

  /** A unit that did not run (or may not have): back in its slot's line, ahead of anything sent after it. */
  function redo(u: Unit, delayMs = 0): void {
    let line = unsettled.get(u.slot);
    if (!line) {
      line = [];
      unsettled.set(u.slot, line);
    }
    // In the order the units were first submitted, whatever order their answers came back in
    // (a TRYAGAIN held back, then an ASK for one submitted after it, from two nodes).
    u.redone = true;
    let at = line.length;
    while (at > 0 && line[at - 1]!.seq > u.seq) at--;
    line.splice(at, 0, u);
    if (delayMs > 0) {
      // TRYAGAIN / CLUSTERDOWN: give the cluster a moment; the slot stays held meanwhile.
      outstanding.set(u.slot, (outstanding.get(u.slot) ?? 0) + 1);
      setTimeout(() => done(u), delayMs).unref();
    }
    done(u);
  }

  /** Where `u` goes now: the node an ASK named (once), else the slot's owner. */
  const targetOf = (u: Unit): string | null => u.asking ?? ownerOf(u.slot);

  /** Sends a slot's waiting units in order, as far as they go to the node its outstanding ones went to. */
  function settle(slot: number): void {
    const line = unsettled.get(slot);
    if (!line || closed) return;
    while (line.length > 0) {
      const u = line[0]!;
      const owner = targetOf(u);
      if (!owner) {
        topology.refreshSlotsCache();
        return;
      }
      // The rest once those are answered (done() settles again).
      if (outstanding.has(slot) && (outstandingAt.get(slot) !== owner || careful(u))) return;
      line.shift();
      if (u.redone) stats.resent++;
      u.redone = false;
      send(u, owner);
    }
    unsettled.delete(slot);
  }

  function dispatch(u: Unit): boolean {
    const line = unsettled.get(u.slot);
    if (line) {
      line.push(u);
      return true;
    }
    const owner = targetOf(u);
    if (!owner || (outstanding.has(u.slot) && (outstandingAt.get(u.slot) !== owner || careful(u)))) {
      unsettled.set(u.slot, [u]);
      if (!owner) topology.refreshSlotsCache();
      return true;
    }
    return send(u, owner);
  }

  /** Onto `owner`'s connection (queued there while it connects); false when its queue is full. */
  function send(u: Unit, owner: string): boolean {
    if (u.asking) {
      u.parts = [encodeCommand(["ASKING"]), ...u.parts];
      u.expect += 1;
      u.asking = null;
    }
    outstanding.set(u.slot, (outstanding.get(u.slot) ?? 0) + 1);
    outstandingAt.set(u.slot, owner);
    if (conn(owner).submit(u)) return true;
    // Not counted after all; without settling (settle may be the caller, mid-line).
    release(u.slot);
    return false;
  }

  topology.on("refresh", () => {
    mapReady = topology.slots.length > 0;
    // The refresh knows better than the MOVED replies it was asked for.
    moved.clear();
    for (const c of conns.values()) c.reroute();
    for (const slot of [...unsettled.keys()]) if (!outstanding.has(slot)) settle(slot);
    // Primaries of the new map get their connection now, so a promoted replica is ready when needed.
    for (const m of new Set(topology.slots.map((s) => s[0]).filter((k): k is string => !!k))) conn(m);
  });

  let seq = 0;
  const unit = (slot: number, parts: Buffer[], expect: number): Unit => ({ slot, parts, bytes: sizeOf(parts), expect, at: now(), asking: null, redone: false, seq: seq++ });

  function submit(slot: number, parts: Buffer[], expect: number, needsSubscriber = false): boolean {
    if (closed) return false;
    const u = unit(slot, parts, expect);
    if (needsSubscriber) u.needsSubscriber = true;
    return dispatch(u);
  }

  return {
    stats,
    sharded: true,
    get ready() {
      return mapReady && !closed;
    },
    get backlog() {
      let n = 0;
      for (const c of conns.values()) n += c.socket?.writableLength ?? 0;
      return n;
    },
    get refusal() {
      return refusal;
    },
    send(args, so) {
      const a = sharded(args);
      return submit(keySlot(keyOf(a)), encodeCommands([a]), 1, so?.needsSubscriber === true && String(a[0]).toUpperCase() === "SPUBLISH");
    },
    transaction(cmds) {
      const all = cmds.map(sharded);
      const first = all[0];
      if (!first) return true;
      return submit(keySlot(keyOf(first)), encodeCommands([["MULTI"], ...all, ["EXEC"]]), all.length + 2);
    },
    barrier(key?: string) {
      if (closed) return Promise.reject(new Error("redis writer closed"));
      const slots = key !== undefined ? [keySlot(key)] : firstSlotPerOwner();
      if (slots === null) return Promise.reject(new Error("redis writer not connected"));
      return Promise.all(
        slots.map(
          (slot) =>
            new Promise<void>((resolve, reject) => {
              const u = unit(slot, [encodeCommand(["PING"])], 1);
              // A shard that is down answers nothing: the caller learns so rather than waiting forever.
              const timer = setTimeout(() => reject(new Error("redis barrier timed out")), BARRIER_TIMEOUT_MS);
              timer.unref();
              u.barrier = {
                resolve: () => {
                  clearTimeout(timer);
                  resolve();
                },
                reject: (err) => {
                  clearTimeout(timer);
                  reject(err);
                },
              };
              if (!dispatch(u)) reject(new Error("redis writer queue full"));
            }),
        ),
      ).then(() => undefined);
    },
    onReady(l) {
      readyListeners.add(l);
      return () => readyListeners.delete(l);
    },
    onDrain(l) {
      drainListeners.add(l);
      return () => drainListeners.delete(l);
    },
    async close() {
      closed = true;
      await Promise.all([...conns.values()].map((c) => c.close()));
      topology.disconnect();
    },
  };

  /** One slot of each primary, for a barrier over all of them; null unless every primary is connected. */
  function firstSlotPerOwner(): number[] | null {
    const seen = new Map<string, number>();
    topology.slots.forEach((s, slot) => {
      const k = s[0];
      if (k && !seen.has(k)) seen.set(k, slot);
    });
    if (seen.size === 0) return null;
    for (const k of seen.keys()) if (!conns.get(k)?.ready) return null;
    return [...seen.values()];
  }
}
