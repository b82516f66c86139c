/**
 * A real Redis Cluster for a test: 6 redis-server processes on free loopback
 * ports (3 primaries, 3 replicas), made with `redis-cli --cluster create` and
 * removed afterwards. Nothing persists (`--save "" --appendonly no`), so a
 * killed primary loses whatever its replica had not received yet: exactly the
 * asynchronous-replication loss the tests must see detected.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";

export interface ClusterNodeProc {
  port: number;
  busPort: number;
  proc: ChildProcess | null;
  dir: string;
}

/** `n` distinct free loopback ports: all held open until every one is chosen, so none is handed out twice. */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<net.Server>((resolve, reject) => {
      const s = net.createServer();
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

async function until<T>(what: string, f: () => Promise<T | null | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One admin command on one node (a fresh connection: nodes come and go in these tests). */
export async function onNode<T>(port: number, f: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis({ host: "127.0.0.1", port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 });
  r.on("error", () => undefined);
  try {
    await r.connect();
    return await f(r);
  } finally {
    r.disconnect();
  }
}

interface NodeLine {
  id: string;
  port: number;
  flags: string[];
  master: string | null;
  slots: [number, number][];
}

function parseNodes(text: string): NodeLine[] {
  return text
    .trim()
    .split("\n")
    .map((line) => {
      const f = line.split(" ");
      const port = Number(f[1]!.split("@")[0]!.split(":")[1]);
      const slots: [number, number][] = [];
      for (const s of f.slice(8)) {
        if (s.startsWith("[")) continue; // migrating/importing markers
        const [a, b] = s.split("-");
        slots.push([Number(a), Number(b ?? a)]);
      }
      return { id: f[0]!, port, flags: f[2]!.split(","), master: f[3] === "-" ? null : f[3]!, slots };
    });
}

export async function startRedisCluster(o: { nodeTimeoutMs?: number } = {}) {
  const root = mkdtempSync(join(tmpdir(), "molecule-rcluster-"));
  const nodes: ClusterNodeProc[] = [];
  const ports = await freePorts(12);
  for (let i = 0; i < 6; i++) nodes.push({ port: ports[2 * i]!, busPort: ports[2 * i + 1]!, proc: null, dir: join(root, String(i)) });

  function launch(n: ClusterNodeProc): void {
    spawnSync("mkdir", ["-p", n.dir]);
    // argv only, loopback only; the node's config file lives in its own directory.
    n.proc = spawn(
      "redis-server",
      [
        "--port", String(n.port),
        "--bind", "127.0.0.1",
        "--cluster-enabled", "yes",
        "--cluster-port", String(n.busPort),
        "--cluster-config-file", join(n.dir, "nodes.conf"),
        "--cluster-node-timeout", String(o.nodeTimeoutMs ?? 1000),
        // A shard that is down stops only its own slots (docs/deployment.md, "Redis Cluster").
        "--cluster-require-full-coverage", "no",
        "--save", "",
        "--appendonly", "no",
        "--dir", n.dir,
        "--logfile", join(n.dir, "redis.log"),
      ],
      { stdio: "ignore" },
    );
  }

  const close = async () => {
    for (const n of nodes) n.proc?.kill("SIGKILL");
    await Promise.all(nodes.map((n) => (n.proc && n.proc.exitCode === null && n.proc.signalCode === null ? new Promise((r) => n.proc!.once("exit", r)) : null)));
    rmSync(root, { recursive: true, force: true });
  };

  try {
    for (const n of nodes) launch(n);
    await Promise.all(nodes.map((n) => until(`redis on ${n.port}`, () => onNode(n.port, (r) => r.ping()))));
    const create = spawnSync("redis-cli", ["--cluster", "create", ...nodes.map((n) => `127.0.0.1:${n.port}`), "--cluster-replicas", "1", "--cluster-yes"], { encoding: "utf8", timeout: 30_000 });
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}\n${create.stderr}`);
    await Promise.all(
      nodes.map((n) => until(`cluster_state:ok on ${n.port}`, () => onNode(n.port, async (r) => ((await r.cluster("INFO")) as string).includes("cluster_state:ok")))),
    );
    // Every node agrees on three primaries each with a replica that has caught up.
    await until("replicas attached", async () => {
      const lines = parseNodes(await onNode(nodes[0]!.port, (r) => r.cluster("NODES") as Promise<string>));
      return lines.filter((l) => l.flags.includes("slave") && !l.flags.includes("fail")).length === 3;
    });
    // ...and whose replication link is up (a replica that never synced cannot be promoted).
    const replicas = parseNodes(await onNode(nodes[0]!.port, (r) => r.cluster("NODES") as Promise<string>)).filter((l) => l.flags.includes("slave"));
    await Promise.all(
      replicas.map((l) => until(`replica ${l.port} in sync`, () => onNode(l.port, async (r) => ((await r.info("replication")) as string).includes("master_link_status:up")))),
    );
  } catch (err) {
    await close();
    throw err;
  }

  async function topology(): Promise<NodeLine[]> {
    for (const n of nodes) {
      if (!n.proc || n.proc.exitCode !== null || n.proc.signalCode !== null) continue;
      try {
        return parseNodes(await onNode(n.port, (r) => r.cluster("NODES") as Promise<string>));
      } catch {
        // this one is away: ask another
      }
    }
    throw new Error("no cluster node answers");
  }

  return {
    nodes,
    /** REDIS_CLUSTER_NODES for the processes under test: every node as a seed. */
    seeds: nodes.map((n) => `127.0.0.1:${n.port}`).join(","),
    topology,
    /** The primary port owning `slot`. */
    async ownerOf(slot: number): Promise<number> {
      const t = await topology();
      const m = t.find((l) => l.flags.includes("master") && !l.flags.includes("fail") && l.slots.some(([a, b]) => slot >= a && slot <= b));
      if (!m) throw new Error(`no primary owns slot ${slot}`);
      return m.port;
    },
    async replicasOf(port: number): Promise<number[]> {
      const t = await topology();
      const m = t.find((l) => l.port === port);
      return t.filter((l) => l.master === m?.id).map((l) => l.port);
    },
    /** SIGKILL one node (no shutdown, no last write to its replica). */
    async kill(port: number): Promise<void> {
      const n = nodes.find((x) => x.port === port)!;
      const p = n.proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      p.kill("SIGKILL");
      await new Promise((r) => p.once("exit", r));
    },
    /** Waits until `port`'s slots are served by another (promoted) primary. */
    async waitFailover(deadPort: number, slot: number): Promise<number> {
      return until(`failover of ${deadPort}`, async () => {
        const p = await this.ownerOf(slot).catch(() => null);
        if (p === null || p === deadPort) return null;
        const ok = await onNode(p, async (r) => ((await r.cluster("INFO")) as string).includes("cluster_state:ok")).catch(() => false);
        return ok ? p : null;
      }, 30_000);
    },
    /**
     * Moves one slot from its primary to `toPort` the way redis-cli --cluster reshard does:
     * IMPORTING/MIGRATING, MIGRATE of each key in batches, then SETSLOT NODE on both.
     * `between` runs after the first batch, with the slot half moved; `beforeKeys` once the slot
     * is MIGRATING, before any key moves.
     */
    async migrateSlot(slot: number, toPort: number, o: { between?: () => Promise<void>; beforeKeys?: () => Promise<void> } = {}): Promise<void> {
      const { between, beforeKeys } = o;
      const t = await topology();
      const fromPort = await this.ownerOf(slot);
      const from = t.find((l) => l.port === fromPort)!;
      const to = t.find((l) => l.port === toPort)!;
      await onNode(toPort, (r) => r.cluster("SETSLOT", slot, "IMPORTING", from.id));
      await onNode(fromPort, (r) => r.cluster("SETSLOT", slot, "MIGRATING", to.id));
      await beforeKeys?.();
      let first = true;
      for (;;) {
        const keys = (await onNode(fromPort, (r) => r.cluster("GETKEYSINSLOT", slot, 1))) as string[];
        if (keys.length === 0) break;
        await onNode(fromPort, (r) => r.call("MIGRATE", "127.0.0.1", String(toPort), "", "0", "5000", "KEYS", ...keys));
        if (first && between) await between();
        first = false;
      }
      await onNode(toPort, (r) => r.cluster("SETSLOT", slot, "NODE", to.id));
      await onNode(fromPort, (r) => r.cluster("SETSLOT", slot, "NODE", to.id));
      for (const l of t) if (l.flags.includes("master") && l.port !== toPort && l.port !== fromPort) await onNode(l.port, (r) => r.cluster("SETSLOT", slot, "NODE", to.id)).catch(() => undefined);
    },
    close,
  };
}
export type RedisClusterHandle = Awaited<ReturnType<typeof startRedisCluster>>;
