import { readdirSync, readFileSync, readlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readyWorkspace } from "./helpers/http.ts";
import { openShell } from "./helpers/term-client.ts";
import { startTopology, type Topology } from "./helpers/topology.ts";
import { ensureBuilt, freshBuild, SERVER_DIST } from "../scripts/build.ts";
import { ROOT } from "../scripts/processes.ts";

/** The process's argv and the executables of its children (a tsx loader, an esbuild service). */
function processView(pid: number): { argv: string[]; children: string[] } {
  const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
  const children: string[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    for (const c of readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").split(" ").filter(Boolean)) {
      try {
        children.push(readlinkSync(`/proc/${c}/exe`));
      } catch {
        // exited meanwhile
      }
    }
  }
  return { argv, children };
}

describe("scripts/build.ts", () => {
  it("a touched input with the same content keeps the build; one whose content differs makes it stale and builds again", () => {
    const b = ensureBuilt();
    const stampFile = join(SERVER_DIST, "current.json");
    // Only this file's own script is touched: others' sources stay as they are.
    const self = join(ROOT, "scripts/build.ts");
    const now = new Date();
    utimesSync(self, now, now);
    const t0 = performance.now();
    expect(freshBuild()?.id).toBe(b.id);
    // Fast when nothing changed: stats, and a hash of the one touched file.
    expect(performance.now() - t0).toBeLessThan(1000);

    const stamp = JSON.parse(readFileSync(stampFile, "utf8")) as { inputs: Record<string, [number, number, string]> };
    const entry = stamp.inputs["scripts/build.ts"];
    expect(entry).toBeDefined();
    stamp.inputs["scripts/build.ts"] = [entry![0], entry![1] - 1, "0".repeat(64)];
    writeFileSync(stampFile, JSON.stringify(stamp));
    expect(freshBuild()).toBeNull();
    // Rebuilt from the same sources: the same id (the directory is a hash of its inputs), a valid stamp again.
    expect(ensureBuilt().id).toBe(b.id);
    expect(freshBuild()?.id).toBe(b.id);
  }, 60_000);
});

describe("the compiled API and worker", () => {
  let t: Topology;
  let ws: string;
  beforeAll(async () => {
    t = await startTopology({ apis: 1, workers: 1 });
    ws = await readyWorkspace(t.apis[0]!.url, t.token);
  }, 60_000);
  afterAll(() => t?.close());

  it("run under plain node (no tsx loader, no esbuild service child) from dist/server", () => {
    const b = ensureBuilt();
    for (const [pid, file] of [
      [t.apis[0]!.proc.child.pid!, b.files.api],
      [t.workers[0]!.proc.child.pid!, b.files.worker],
    ] as const) {
      const v = processView(pid);
      expect(v.argv.slice(1)).toEqual([file]);
      expect(v.argv.join(" ")).not.toMatch(/tsx/);
      expect(v.children.filter((c) => /esbuild/.test(c))).toEqual([]);
      // Nothing of tsx or esbuild is even loaded.
      expect(readFileSync(`/proc/${pid}/maps`, "utf8")).not.toMatch(/esbuild|tsx/);
    }
  });

  it("the API serves what it reads beside its sources: the reference's redoc bundle, the docs, the OpenAPI document", async () => {
    const base = t.apis[0]!.url;
    const redoc = await fetch(`${base}/reference/redoc.standalone.js`);
    expect(redoc.status).toBe(200);
    expect((await redoc.arrayBuffer()).byteLength).toBeGreaterThan(100_000);
    const docs = await fetch(`${base}/docs/terminal-protocol.md`);
    expect(docs.status).toBe(200);
    expect(await docs.text()).toContain("molecule.terminal.v1");
    expect((await fetch(`${base}/openapi.json`)).status).toBe(200);
  });

  it("a shell opens, echoes and re-attaches from the replay log (the Lua scripts, node-pty, the migrations)", async () => {
    const c = await openShell(t.apis[0]!.wsUrl, ws, { token: t.token });
    expect((await c.run("echo compiled-$((6*7))")).trim()).toBe("compiled-42");
    const session = c.hello!.session;
    c.drop(); // a lost connection: the session waits for a re-attach
    await c.closed;
    const r = await openShell(t.apis[0]!.wsUrl, ws, { token: t.token, session, offset: 0 });
    await r.waitText("compiled-42");
    await r.close();
  });
});
