/**
 * REDIS_CLUSTER_NODES: parsing, precedence over REDIS_URL, and the credentials of REDIS_URL (or of
 * the entries) used on every node by every kind of connection, against a real local cluster.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { baseEnvSchema, createClusterWriter, createHub, createLogger, createRedis, parseClusterNodes, parseEnv, redisTarget, verifyRedis } from "@molecule/shared";
import { waitFor } from "../helpers/http.ts";
import { onNode, startRedisCluster, type RedisClusterHandle } from "./harness.ts";

const log = createLogger("test", "silent");

describe("REDIS_CLUSTER_NODES parsing", () => {
  it("takes host:port lists and URLs, and refuses anything else at start-up", () => {
    expect(parseClusterNodes("127.0.0.1:7000, 10.0.0.2:7001,[::1]:7002")?.nodes).toEqual([
      { host: "127.0.0.1", port: 7000 },
      { host: "10.0.0.2", port: 7001 },
      { host: "::1", port: 7002 },
    ]);
    expect(parseClusterNodes("rediss://u:p%40ss@h1:7000,h2:7001")).toEqual({ nodes: [{ host: "h1", port: 7000 }, { host: "h2", port: 7001 }], url: "rediss://u:p%40ss@h1:7000" });
    for (const bad of ["h1", "h1:0", "h1:70000", "h1:7000;rm -rf /", "http://h1:7000", ","]) {
      expect(() => parseEnv(baseEnvSchema, { REDIS_CLUSTER_NODES: bad }), bad).toThrow(/REDIS_CLUSTER_NODES/);
    }
  });

  it("selects cluster mode over REDIS_URL, whose credentials and TLS apply unless the entries bring their own", () => {
    const single = redisTarget(parseEnv(baseEnvSchema, { REDIS_URL: "redis://a:b@r:6379" }));
    expect(single).toEqual({ url: "redis://a:b@r:6379", cluster: null });
    const c = redisTarget(parseEnv(baseEnvSchema, { REDIS_URL: "rediss://a:b@r:6379", REDIS_CLUSTER_NODES: "n1:7000,n2:7000" }));
    expect(c.cluster).toEqual([{ host: "n1", port: 7000 }, { host: "n2", port: 7000 }]);
    expect(c.url).toBe("rediss://a:b@r:6379");
    const own = redisTarget(parseEnv(baseEnvSchema, { REDIS_URL: "redis://a:b@r:6379", REDIS_CLUSTER_NODES: "redis://x:y@n1:7000,n2:7000" }));
    expect(own.url).toBe("redis://x:y@n1:7000");
  });
});

describe("credentials on a real cluster", () => {
  let c: RedisClusterHandle;
  beforeAll(async () => {
    c = await startRedisCluster();
    // A user of the deployment's own on every node; the default user stays open (the harness's admin).
    await Promise.all(c.nodes.map((n) => onNode(n.port, (r) => r.call("ACL", "SETUSER", "molecule", "on", ">s3cret", "~*", "&*", "+@all"))));
  }, 60_000);
  afterAll(async () => {
    await c?.close();
  });

  it("every connection (commands, subscribers, writer) authenticates with REDIS_URL's user on every node; wrong credentials are refused at start-up", async () => {
    const target = redisTarget({ REDIS_URL: "redis://molecule:s3cret@ignored.invalid:1", REDIS_CLUSTER_NODES: c.seeds });
    await verifyRedis(target);
    const wrong = redisTarget({ REDIS_URL: "redis://molecule:nope@ignored.invalid:1", REDIS_CLUSTER_NODES: c.seeds });
    await expect(verifyRedis(wrong)).rejects.toThrow(/refused the credentials/);
    const redis = createRedis(target, { connectionName: "cred-cmd" });
    const sub = createRedis(target, { connectionName: "cred-sub" });
    const writer = createClusterWriter({ target, name: "cred-out", log });
    const hub = createHub(sub, log);
    try {
      await redis.set("{cred}:k", "v");
      expect(await redis.get("{cred}:k")).toBe("v");
      await waitFor(async () => writer.ready, 10_000, 20);
      const got: string[] = [];
      await hub.subscribe("{cred}:ch", (m) => got.push(m.toString()));
      writer.send(["PUBLISH", "{cred}:ch", "hello"]);
      await waitFor(async () => got.length === 1, 5000, 20);
      expect(got).toEqual(["hello"]);
      // Every connection these made is the deployment's user, none the default one.
      const lists = await Promise.all(c.nodes.map((n) => onNode(n.port, (r) => r.client("LIST") as Promise<string>)));
      const ours = lists.flatMap((l) => l.split("\n")).filter((l) => / name=cred-/.test(l));
      expect(ours.length).toBeGreaterThanOrEqual(3 + 3);
      for (const l of ours) expect(l, l).toMatch(/ user=molecule /);
    } finally {
      await writer.close();
      redis.disconnect();
      sub.disconnect();
    }
  });
});
