/**
 * Presence when an API node dies: the viewers it held vanish from everyone's
 * `viewers` list (a dead node announces nothing, and its entries stay in Redis),
 * while the viewer on a node that lives is still shown. Real processes, SIGKILL.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServerMessage } from "@molecule/shared";
import { stopProc } from "../scripts/processes.ts";
import { readyWorkspace } from "./helpers/http.ts";
import { openShell, type TermClient } from "./helpers/term-client.ts";
import { startTopology, type Topology } from "./helpers/topology.ts";

type Viewers = Extract<ServerMessage, { type: "viewers" }>;
const lastViewers = (c: TermClient): Viewers | undefined => c.messages.filter((m): m is Viewers => m.type === "viewers").at(-1);

let t: Topology;
let ws: string;
beforeAll(async () => {
  t = await startTopology({ apis: 3, workers: 1 });
  ws = await readyWorkspace(t.apis[0]!.url, t.token);
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe("presence across API nodes", () => {
  it("a SIGKILLed node's viewer leaves everyone's list within seconds; the other node's viewer stays", async () => {
    const ctl = await openShell(t.apis[0]!.wsUrl, ws, { token: t.token });
    const session = ctl.hello!.session;
    const doomed = await openShell(t.apis[1]!.wsUrl, ws, { token: t.token, session, view: true });
    await ctl.until(() => lastViewers(ctl)?.count === 1, 10_000, "one viewer");
    const survivor = await openShell(t.apis[2]!.wsUrl, ws, { token: t.token, session, view: true });
    await ctl.until(() => lastViewers(ctl)?.count === 2, 10_000, "two viewers");
    await survivor.until(() => lastViewers(survivor)?.count === 2, 10_000, "two viewers (survivor)");
    const kept = lastViewers(ctl)!.viewers[1]!;
    await stopProc(t.apis[1]!.proc, "SIGKILL");
    // Its viewer's connection died with it: no close handshake, nothing told the other nodes.
    expect((await doomed.closed).code).not.toBe(1000);
    // Within the liveness key's 10 s and a watchdog round or two.
    await ctl.until(() => lastViewers(ctl)?.count === 1, 20_000, "the dead node's viewer gone (controller)");
    await survivor.until(() => lastViewers(survivor)?.count === 1, 20_000, "the dead node's viewer gone (survivor)");
    expect(lastViewers(ctl)!.viewers).toEqual([kept]);
    expect(lastViewers(survivor)!.viewers).toEqual([kept]);
    expect(lastViewers(ctl)!.controller).not.toBeNull();
    // A change after it: the list stays without the dead node's entry.
    const late = await openShell(t.apis[2]!.wsUrl, ws, { token: t.token, session, view: true });
    await ctl.until(() => lastViewers(ctl)?.count === 2, 10_000, "a new viewer counted");
    expect(lastViewers(ctl)!.viewers.slice(0, 1)).toEqual([kept]);
    await Promise.all([late.close(), survivor.close()]);
    await ctl.close();
  }, 60_000);
});
