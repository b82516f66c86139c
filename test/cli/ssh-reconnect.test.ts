import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readyWorkspace, waitFor } from "../helpers/http.ts";
import { startTopology, type Topology } from "../helpers/topology.ts";
import { buildCli, cliHome, PtyProc, runCli } from "./harness.ts";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.ts";

let t: Topology;
let ws: string;
let bin: string;
const cleanups: (() => void)[] = [];

beforeAll(async () => {
  const [topo, b] = await Promise.all([startTopology({ apis: 2, workers: 1 }), buildCli()]);
  t = topo;
  bin = b.bin;
  cleanups.push(b.cleanup);
  ws = await readyWorkspace(t.apis[0]!.url, t.token, "reconnect");
});
afterAll(async () => {
  for (const c of cleanups) c();
  await t?.close();
});

const port = (url: string) => Number(new URL(url).port);
/** The CLI's notice, which sits between remote bytes, taken out so the remote's lines join up again. */
const NOTICE = /\r\n\[molecule: [^\]\r\n]*?; reconnecting… ok\]\r\n/g;

function live() {
  return t.apis.filter((x) => x.proc.child.exitCode === null && x.proc.child.signalCode === null);
}

function sshEnv(): Record<string, string> {
  const h = cliHome();
  cleanups.push(h.cleanup);
  return { ...h.env, MOLECULE_TOKEN: t.token };
}

async function sshVia(url: string): Promise<PtyProc> {
  const h = cliHome();
  cleanups.push(h.cleanup);
  const p = new PtyProc(process.execPath, [bin, "--api", url, "ssh", ws], { env: { ...h.env, MOLECULE_TOKEN: t.token } });
  await p.waitText(/# $/m, 20_000);
  return p;
}

describe("molecule ssh across API node failures", () => {
  it("SIGKILL of the node holding the socket mid-output: one notice, then every line exactly once, in order", async () => {
    const [a, b] = live() as [(typeof t.apis)[0], (typeof t.apis)[0]];
    const proxy = await startTcpProxy(port(a.url));
    try {
      const p = await sshVia(proxy.url);
      const from = p.text.length;
      p.write("stty -echo; for i in $(seq 1 3000); do echo line $i; [ $((i % 10)) = 0 ] && sleep 0.005; done; echo counter-$((1))-done; stty echo\r");
      await p.waitText(/^line 200\r$/m, 20_000, from);
      proxy.setTarget(port(b.url));
      a.proc.child.kill("SIGKILL");
      await p.waitText("counter-1-done", 90_000, from);
      const out = p.text.slice(from);
      expect(out.match(NOTICE)?.length).toBe(1);
      expect(out).toMatch(/\[molecule: connection lost; reconnecting… ok\]/);
      const nums = [...out.replace(NOTICE, "").matchAll(/^line (\d+)\r$/gm)].map((m) => Number(m[1]));
      expect(nums.length).toBe(3000);
      for (let i = 0; i < 3000; i++) if (nums[i] !== i + 1) throw new Error(`line ${i + 1} is ${nums[i]} (lost, repeated or reordered)`);
      p.write("exit 7\r");
      expect((await p.exited).exitCode).toBe(7);
    } finally {
      await proxy.close();
      await t.addApi();
    }
  }, 150_000);

  it("keystrokes typed while the node holding the socket is SIGKILLed reach the shell once each, in order", async () => {
    const [a, b] = live() as [(typeof t.apis)[0], (typeof t.apis)[0]];
    const proxy = await startTcpProxy(port(a.url));
    try {
      const p = await sshVia(proxy.url);
      const from = p.text.length;
      const n = 1200;
      // The shell keeps exactly what it is typed (raw, no echo); `timeout` ends it if keys are lost.
      p.write(`stty raw -echo; echo typing-$((1))-ready; timeout 60 head -c ${n} > /root/typed; stty sane; echo typed-$((1))-done\r`);
      // Printed after stty ran (the marker is computed, so the line's echo cannot match it).
      await p.waitText("typing-1-ready", 20_000, from);
      const keys = Array.from({ length: n }, (_, i) => String.fromCharCode(97 + (i % 26))).join("");
      for (let i = 0; i < n; i++) {
        if (i === 300) {
          proxy.setTarget(port(b.url));
          a.proc.child.kill("SIGKILL");
        }
        p.write(keys[i]!);
        // A fast typist: a key every 2 ms.
        await new Promise((r) => setTimeout(r, 2));
      }
      await p.waitText("typed-1-done", 90_000, from);
      expect(p.text.slice(from)).toMatch(/\[molecule: connection lost; reconnecting… ok\]/);
      const typed = await runCli(bin, ["--api", b.url, "exec", ws, "--", "cat", "/root/typed"], { env: sshEnv() });
      expect(typed.stdout.length).toBe(n);
      expect(typed.stdout).toBe(keys);
      p.write("exit\r");
      expect((await p.exited).exitCode).toBe(0);
    } finally {
      await proxy.close();
      await t.addApi();
    }
  }, 150_000);

  it("a cut network (no close frame, the node alive) and a drain (1012): re-attached to the same shell", async () => {
    const [a, b] = live() as [(typeof t.apis)[0], (typeof t.apis)[0]];
    const proxy = await startTcpProxy(port(a.url));
    try {
      const p = await sshVia(proxy.url);
      expect((await p.run("export MARK=kept-$((40+2)); echo $MARK")).trim()).toBe("kept-42");
      proxy.cut();
      await p.waitText("reconnecting… ok]", 20_000);
      expect((await p.run("echo $MARK")).trim()).toBe("kept-42");
      // Drain: 1012 with `restarting`, then the same shell through the other node.
      proxy.setTarget(port(b.url));
      const before = p.text.length;
      a.proc.child.kill("SIGTERM");
      await p.waitText("the API node is restarting; reconnecting… ok]", 20_000, before);
      expect((await p.run("echo $MARK")).trim()).toBe("kept-42");
      p.write("exit\r");
      expect((await p.exited).exitCode).toBe(0);
    } finally {
      await proxy.close();
    }
  }, 90_000);
});

describe("molecule cp across API node failures", () => {
  async function upload(via: TcpProxy, fail: () => void): Promise<void> {
    const h = cliHome();
    cleanups.push(h.cleanup);
    const env = { ...h.env, MOLECULE_TOKEN: t.token };
    const dir = mkdtempSync(join(tmpdir(), "molecule-up-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const src = join(dir, "up.bin");
    writeFileSync(src, randomBytes(24 * 1024 * 1024));
    const want = createHash("sha256").update(readFileSync(src)).digest("hex");
    const start = via.bytesUp;
    const run = runCli(bin, ["--api", via.url, "cp", src, `${ws}:/root/up.bin`], { env, timeoutMs: 180_000 });
    // A quarter of the way through, the connection goes.
    await waitFor(async () => via.bytesUp - start > 6 * 1024 * 1024, 60_000, 5);
    fail();
    const r = await run;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/reconnecting… ok/);
    const sum = await runCli(bin, ["--api", via.url, "exec", ws, "--", "sha256sum", "/root/up.bin"], { env });
    expect(sum.stdout.split(" ")[0]).toBe(want);
  }

  it("an upload through the node that is SIGKILLed, and through a cut network, arrives whole: the bytes in flight are sent again, none twice", async () => {
    // Two fresh nodes (the tests above killed and drained theirs).
    const a = await t.addApi();
    const b = await t.addApi();
    const proxy = await startTcpProxy(port(a.url));
    try {
      await upload(proxy, () => {
        proxy.setTarget(port(b.url));
        a.proc.child.kill("SIGKILL");
      });
      await upload(proxy, () => proxy.cut());
    } finally {
      await proxy.close();
    }
  }, 240_000);
});
