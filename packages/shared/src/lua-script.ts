import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Redis } from "ioredis";

/**
 * A Lua script of ./lua/ run on any ioredis connection: EVAL the first time on a
 * connection, then EVALSHA; EVAL again after NOSCRIPT (a restarted server). As
 * ioredis's defineCommand does, without adding anything to the caller's object.
 */
export function luaScript(name: string, numKeys: number) {
  const source = readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), "utf8");
  const sha = createHash("sha1").update(source).digest("hex");
  /** Connections that sent the script once (EVAL). */
  const sent = new WeakSet<Redis>();
  return async function run(r: Redis, args: (string | number | Buffer)[]): Promise<unknown> {
    if (!sent.has(r)) {
      sent.add(r);
      return r.callBuffer("EVAL", [source, numKeys, ...args]);
    }
    try {
      return await r.callBuffer("EVALSHA", [sha, numKeys, ...args]);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.includes("NOSCRIPT")) throw err;
      return r.callBuffer("EVAL", [source, numKeys, ...args]);
    }
  };
}
