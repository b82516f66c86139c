import { workerAliveKey } from "@molecule/shared";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readyWorkspace, waitFor } from "./helpers/http.ts";
import { startStack, type Stack } from "./helpers/stack.ts";
import { openShell } from "./helpers/term-client.ts";

/**
 * An idle worker beats every 2 s (terminal/runner.ts): its first session must not wait for the
 * next idle round. The key's value is the worker's session count, so it tells which beat ran.
 */
let s: Stack;
let token: string;
const alive = () => s.redis.get(workerAliveKey(s.ns, s.workerId));

describe("the worker's heartbeat", () => {
  beforeAll(async () => {
    s = await startStack();
    token = (await s.org("heartbeat")).token;
  });
  afterAll(async () => {
    await s?.close();
  });

  it("counts an idle worker's first session at once, not at its next idle round", async () => {
    const ws = await readyWorkspace(s.url, token, "beat-ws");
    await waitFor(async () => (await alive()) === "0", 10_000);
    const c = await openShell(s.wsUrl, ws, { token });
    // The beat went out with the claim, before the shell's ready event: it has run by the hello.
    expect(await alive()).toBe("1");
    await c.close();
    await waitFor(async () => (await alive()) === "0", 10_000);
  });
});
