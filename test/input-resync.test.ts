/**
 * The worker's subscriber drops on its own (a network blip, Redis closing it) while the user types:
 * pub/sub keeps nothing, so whatever was published meanwhile never reached the worker. Each client
 * connection's messages are numbered; the worker, subscribed again, asks for what came after the last
 * one it applied, and the API node holding the client sends it again: every keystroke arrives once,
 * in order.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sessionKeys, workerConnectionName } from "@molecule/shared";
import { readyWorkspace, waitFor } from "./helpers/http.ts";
import { startStack, type Stack } from "./helpers/stack.ts";
import { openShell } from "./helpers/term-client.ts";

let stack: Stack;
let token: string;
let ws: string;
beforeAll(async () => {
  stack = await startStack();
  token = (await stack.org("resync")).token;
  ws = await readyWorkspace(stack.url, token, "resync-ws");
});
afterAll(async () => {
  await stack?.close();
});

/** Closes the worker's subscriber connection from the server side; resolves with its client id. */
async function killWorkerSubscriber(): Promise<string> {
  const name = workerConnectionName(stack.ns, stack.workerId, "sub");
  const line = ((await stack.redis.client("LIST")) as string).split("\n").find((l) => l.includes(` name=${name} `));
  const id = /^id=(\d+)/.exec(line ?? "")?.[1];
  if (!id) throw new Error(`no connection named ${name}`);
  await stack.redis.client("KILL", "ID", id);
  return id;
}

describe("the worker's subscriber dropped alone, mid-typing", () => {
  it("every keystroke reaches the shell once and in order (three drops)", async () => {
    const c = await openShell(stack.wsUrl, ws, { token });
    await c.run("stty -echo");
    for (let round = 1; round <= 3; round++) {
      const from = c.text().length;
      const before = (await stack.redis.client("LIST")) as string;
      const tokens: string[] = [];
      c.send("echo ");
      for (let i = 0; i < 60; i++) {
        const t = `r${round}k${String(i).padStart(2, "0")}`;
        tokens.push(t);
        c.send(t);
        // Keystrokes keep coming while the worker's subscriber is gone and while it comes back.
        if (i === 10) await killWorkerSubscriber();
        await new Promise((r) => setTimeout(r, 4));
      }
      c.send("\r");
      const want = tokens.join("");
      await c.waitText(new RegExp(`^${want}\\r$`, "m"), 15_000, from);
      // The subscriber did go (a new connection under the same name), and nothing came twice.
      const name = workerConnectionName(stack.ns, stack.workerId, "sub");
      const idOf = (list: string) => /(?:^|\n)id=(\d+)[^\n]* name=([^ ]+) /.exec(list.split("\n").filter((l) => l.includes(` name=${name} `)).join("\n"))?.[1];
      await waitFor(async () => idOf((await stack.redis.client("LIST")) as string) !== undefined, 10_000);
      expect(idOf((await stack.redis.client("LIST")) as string)).not.toBe(idOf(before));
      expect(c.text().slice(from).split(want)).toHaveLength(2);
    }
    expect(c.messages.filter((m) => m.type === "error")).toEqual([]);
    await c.close();
  });
});

describe("the API node's subscriber away while the session changes", () => {
  it("the shell exits meanwhile: once it is back the client still gets the exit (the state is read again)", async () => {
    const c = await openShell(stack.wsUrl, ws, { token });
    const session = c.hello!.session;
    await c.run("echo up");
    stack.apiSub.disconnect();
    c.send("exit 7\r");
    // The end is announced while nobody on this node listens.
    await waitFor(async () => (await stack.redis.hget(sessionKeys(stack.ns, session).meta, "state")) === "ended", 10_000);
    await stack.apiSub.connect();
    expect((await c.waitMessage("exit", 10_000)).code).toBe(7);
    expect((await c.closed).code).toBe(1000);
  });

  it("a viewer joins meanwhile (through another node): once it is back the controller's viewer list has it", async () => {
    const other = await stack.addApi();
    const c = await openShell(stack.wsUrl, ws, { token });
    await c.run("echo up");
    stack.apiSub.disconnect();
    const v = await openShell(other.wsUrl, ws, { token, session: c.hello!.session, offset: 0, view: true });
    // The viewer's own list has it: the join is in the session's presence, announced while c's node was away.
    await v.until(() => v.messages.some((m) => m.type === "viewers" && m.count === 1), 10_000, "the viewer's list");
    expect(c.messages.some((m) => m.type === "viewers")).toBe(false);
    await stack.apiSub.connect();
    await c.until(() => c.messages.some((m) => m.type === "viewers" && m.count === 1), 10_000, "the controller's list");
    await v.close();
    await c.close();
  });
});
