import type { Redis } from "ioredis";
import { readOutput, sessionKeys } from "@molecule/shared";

/**
 * The newest output of a session's replay log (its last `tail` bytes) as text:
 * what a re-attach would be sent. Tests wait on it to know the server side has
 * produced something while no client was watching, instead of sleeping.
 */
export async function loggedText(redis: Redis, ns: string, sessionId: string, tail = 16 * 1024): Promise<string> {
  const log = sessionKeys(ns, sessionId).log;
  const head = await readOutput(redis, log, 0, 0, 1);
  if (head.lastEnd === null) return "";
  const from = Math.max(head.firstStart ?? 0, head.lastEnd - tail);
  const x = await readOutput(redis, log, from, tail + 64 * 1024);
  return Buffer.concat(x.chunks.map((c) => c.chunk)).toString("utf8");
}
