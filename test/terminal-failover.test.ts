import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readyWorkspace } from "./helpers/http.ts";
import { openShell } from "./helpers/term-client.ts";
import { startTopology, type Topology } from "./helpers/topology.ts";

let t: Topology;
let ws: string;
beforeAll(async () => {
  t = await startTopology({ apis: 2, workers: 2 });
  ws = await readyWorkspace(t.apis[0]!.url, t.token);
});
afterAll(() => t?.close());

/** Parses "line N" output and checks it is exactly 1..n, once each, in order. */
function expectEveryLineOnce(text: string, n: number): void {
  const nums = [...text.matchAll(/^line (\d+)\r?$/gm)].map((m) => Number(m[1]));
  expect(nums.length).toBe(n);
  for (let i = 0; i < n; i++) if (nums[i] !== i + 1) throw new Error(`line ${i + 1} is ${nums[i]} (lost, repeated or reordered)`);
}

describe("API node failure", () => {
  it("SIGKILL the node holding the socket mid-output: re-attach on the other node gets every line exactly once, in order", async () => {
    const [a, b] = t.apis as [(typeof t.apis)[0], (typeof t.apis)[0]];
    const c = await openShell(a.wsUrl, ws, { token: t.token });
    const pid = (await c.run("echo $$")).trim();
    const start = c.offset;
    // Output keeps coming for a while (a short sleep every 10 lines: few forks, so a loaded machine keeps up).
    c.send("stty -echo; for i in $(seq 1 3000); do echo line $i; [ $((i % 10)) = 0 ] && sleep 0.005; done; echo counter-$((1))-done; stty echo\r");
    await c.waitText(/^line 200\r$/m);
    a.proc.child.kill("SIGKILL");
    await c.closed;
    const have = c.offset;
    const r = await openShell(b.wsUrl, ws, { token: t.token, session: c.hello!.session, offset: have });
    expect(r.hello!.offset).toBe(have);
    await r.waitText("counter-1-done", 90_000);
    expect(r.messages.filter((m) => m.type === "gap")).toEqual([]);
    const all = Buffer.concat([c.output.subarray(0), r.output]).toString("utf8");
    // Everything from the counter command on, across both connections.
    expectEveryLineOnce(all.slice(Buffer.from(c.output.subarray(0, start - c.base)).toString("utf8").length), 3000);
    expect((await r.run("echo $$")).trim()).toBe(pid);
    await r.close();
    await t.addApi(); // keep two nodes for the next test
  }, 150_000);

  it("SIGTERM (drain): clients get 1012 with `restarting` and re-attach elsewhere to the same shell", async () => {
    const live = t.apis.filter((x) => x.proc.child.exitCode === null && x.proc.child.signalCode === null);
    const [a, b] = live as [(typeof t.apis)[0], (typeof t.apis)[0]];
    const c = await openShell(a.wsUrl, ws, { token: t.token });
    await c.run("export MARK=drained-$((40+2))");
    a.proc.child.kill("SIGTERM");
    const err = await c.waitMessage("error");
    expect(err.code).toBe("restarting");
    expect((await c.closed).code).toBe(1012);
    const r = await openShell(b.wsUrl, ws, { token: t.token, session: c.hello!.session, offset: c.offset });
    expect((await r.run("echo $MARK")).trim()).toBe("drained-42");
    await r.close();
    expect(await a.proc.exited).toBe(0);
  });
});
