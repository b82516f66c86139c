/**
 * The Terminal tab into an aws workspace, end to end: real API, worker, WebSocket,
 * node-pty and OpenSSH (`ssh` client and an sshd per fake instance). Only AWS is
 * fake: its HTTP APIs and the EIC Endpoint's openTunnel WebSocket, which checks the
 * presigned URL (fake-cloud.ts). Native mode (the default) runs with no `aws` on PATH:
 * our tunnel (eic-proxy.mjs) is ssh's ProxyCommand. aws-terminal-aws-cli.test.ts runs
 * this same file with MOLECULE_AWS_TUNNEL=aws-cli, through the fake aws-cli (bin/aws).
 */
import { readFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAwsProvider, type AwsProvider } from "../../apps/terminal-worker/src/providers/aws/provider.ts";
import type { AwsProviderOptions } from "../../apps/terminal-worker/src/providers/aws/config.ts";
import type { Provider } from "../../apps/terminal-worker/src/providers/types.ts";
import { descendants } from "../../apps/terminal-worker/src/terminal/kill-tree.ts";
import { generateEd25519 } from "../../apps/terminal-worker/src/providers/aws/eic.ts";
import { call, readyWorkspace, waitFor } from "../helpers/http.ts";
import { cmdlineOf, processAlive } from "../helpers/procs.ts";
import { startStack, type Stack } from "../helpers/stack.ts";
import { openShell, TermClient } from "../helpers/term-client.ts";
import type { FakeInstance } from "./fake-cloud.ts";
import { findExecutable } from "../../apps/terminal-worker/src/providers/executables.ts";
import { presignOpenTunnel } from "../../apps/terminal-worker/src/providers/aws/eic-signer.ts";
import { openTunnel } from "../../apps/terminal-worker/src/providers/aws/eic-wire.mjs";
import { FAKE_KEY_ID, FAKE_SECRET } from "./fake-cloud.ts";
import { FAKE_AWS_BIN, FAKE_AWS_V1_BIN, startAwsHarness, SYSTEM_PATH, testTunnelMode, type AwsHarness } from "./harness.ts";

const mode = testTunnelMode();

let h: AwsHarness;
let s: Stack;
let token: string;
let ws: string;
let inst: FakeInstance;
// The worker's aws provider, swappable per test (a different PATH, for instance).
let current: AwsProvider;
const made: AwsProvider[] = [];
function useProvider(extra: Partial<AwsProviderOptions> = {}): void {
  current = createAwsProvider(h.options(extra));
  made.push(current);
}
const aws: Provider = {
  name: "aws",
  create: (w, c) => current.create(w, c),
  restart: (w, c) => current.restart!(w, c),
  destroy: (w) => current.destroy(w),
  terminalCommand: (c) => current.terminalCommand(c),
};

beforeAll(async () => {
  h = await startAwsHarness();
  useProvider();
  s = await startStack({ api: { provider: "aws" }, providers: { aws } });
  token = (await s.org("eic")).token;
  ws = await readyWorkspace(s.url, token, "eic-terminal");
  const row = (await call(s.url, "GET", `/workspaces/${ws}`, { token })).body;
  inst = h.cloud.instances.get(row.instance_id)!;
  expect(inst).toBeDefined();
}, 60_000);
afterAll(async () => {
  await s?.close();
  for (const p of made) p.close();
  await h?.close();
});

/** The worker-side process tree of a session: ssh and the aws-cli it runs as ProxyCommand. */
function treeOf(sessionId: string): number[] {
  const pid = s.worker!.terminal!.sessions.get(sessionId)?.pid;
  return pid ? [pid, ...descendants(pid)] : [];
}

/** The session's closed audit row (by id, or the newest one when the session never said hello). */
async function auditOf(sessionId: string | null) {
  return waitFor(async () => {
    const r = await call(s.url, "GET", `/workspaces/${ws}/terminal/sessions`, { token });
    const me = sessionId ? r.body.sessions.find((x: { id: string }) => x.id === sessionId) : r.body.sessions[0];
    return me?.closed_at ? me : null;
  });
}

async function prompt(c: TermClient): Promise<void> {
  await c.waitText(/root@ws-[0-9a-f-]{12}:.*# /, 15_000);
}

/** A session expected to fail before or right after its shell starts: the error message and the close. */
async function failure() {
  const c = new TermClient(s.wsUrl, ws, { token });
  expect(await c.refused).toBeNull();
  const err = await c.waitMessage("error", 20_000);
  const closed = await c.closed;
  return { c, err, closed };
}

describe(`Terminal into an aws workspace through EC2 Instance Connect (${mode} tunnel)`, () => {
  it("runs the shell in the workspace container: whoami, workspace id, resize, Ctrl-C, exit code", async () => {
    const pushesBefore = h.cloud.callsOf("SendSSHPublicKey").length;
    const t0 = performance.now();
    const c = await openShell(s.wsUrl, ws, { token, cols: 100, rows: 30 });
    await prompt(c);
    const openMs = performance.now() - t0;
    const session = c.hello!.session;

    // One key pushed, for this instance and OS user, and the key directory holds this session's key only.
    const pushes = h.cloud.callsOf("SendSSHPublicKey").slice(pushesBefore);
    expect(pushes).toHaveLength(1);
    expect(pushes[0]!.params).toMatchObject({ InstanceId: inst.id, InstanceOSUser: "root" });
    expect(pushes[0]!.params.SSHPublicKey).toMatch(/^ssh-ed25519 /);
    expect(h.sessionKeyDirs()).toHaveLength(1);
    const tunnels = h.cloud.callsOf("OpenTunnel");
    expect(tunnels.at(-1)!.params).toMatchObject({ remotePort: "22", privateIpAddress: inst.privateIp });

    expect((await c.run("whoami")).trim()).toBe("root");
    expect((await c.run("echo $MOLECULE_WS_ID")).trim()).toBe(ws);
    expect((await c.run("stty size")).trim()).toBe("30 100");
    c.resize(132, 43);
    await waitFor(async () => (await c.run("stty size")).trim() === "43 132", 5000, 100);

    // Ctrl-C reaches the remote foreground process through ssh -tt.
    c.send("sleep 30; echo not-$((6*7))-interrupted\r");
    await c.waitText("interrupted\r\n");
    // The remote shell has started the sleep: the Ctrl-C is for it, not for the line being read.
    await waitFor(async () => h.execPids(inst).some((p) => descendants(p).some((d) => /^sleep 30\b/.test(cmdlineOf(d)))), 5000, 20);
    const from = c.text().length;
    const tInt = Date.now();
    c.send("\x03");
    await c.waitText(/\^C[\s\S]*# $/, 5000, from);
    const ctrlCMs = Date.now() - tInt;
    c.send("echo status=$?\r");
    await c.waitText("status=130", 5000, from);
    expect(c.text()).not.toContain("not-42-interrupted");

    const tree = treeOf(session);
    expect(tree.map(cmdlineOf).join("\n")).toMatch(
      mode === "native" ? /socat - UNIX-CONNECT:\S+\/t\.sock/ : /ec2-instance-connect open-tunnel --instance-id i-/,
    );
    if (mode === "native") {
      // The whole journey ran with no aws executable the worker could find.
      expect(await findExecutable("aws", h.options().childEnv.PATH!)).toBeNull();
      expect(tunnels.at(-1)!.params["X-Amz-Credential"]).toMatch(/\/ec2-instance-connect\/aws4_request$/);
      // The worker holds the tunnel: ssh and its relay see no AWS credentials at all.
      expect(readFileSync(`/proc/${tree[0]}/environ`, "utf8").split("\0").filter((kv) => kv.startsWith("AWS_"))).toEqual([]);
    }
    const remote = h.execPids(inst);
    c.send("exit 3\r");
    const exit = await c.waitMessage("exit", 10_000);
    expect(exit).toMatchObject({ type: "exit", code: 3 });
    expect((await c.closed).code).toBe(1000);

    const row = await auditOf(session);
    expect(row).toMatchObject({ provider: "aws", instance_id: inst.id, os_user: "root", close_reason: "exit", exit_code: 3 });
    await waitFor(async () => h.sessionKeyDirs().length === 0, 5000, 20);
    await waitFor(async () => tree.every((p) => !processAlive(p)) && remote.every((p) => !processAlive(p)), 5000, 20);
    console.info(`[aws terminal] open to prompt ${openMs} ms, Ctrl-C to prompt ${ctrlCMs} ms`);
  });

  it("closing the WebSocket kills ssh, aws-cli and the remote shell, and deletes the key", async () => {
    const before = new Set(h.execPids(inst));
    const c = await openShell(s.wsUrl, ws, { token });
    await prompt(c);
    await c.run("sleep 600 & true");
    const session = c.hello!.session;
    const tree = treeOf(session);
    const cmds = tree.map(cmdlineOf);
    expect(cmds.some((x) => /^\S*ssh -tt /.test(x))).toBe(true);
    expect(cmds.some((x) => x.includes(mode === "native" ? "socat - UNIX-CONNECT:" : "fake-aws-cli.mjs ec2-instance-connect open-tunnel"))).toBe(true);
    const remote = h.execPids(inst).filter((p) => !before.has(p));
    expect(remote).toHaveLength(1);
    expect(processAlive(remote[0]!)).toBe(true);
    expect(h.sessionKeyDirs()).toHaveLength(1);

    await c.close(1001);
    await waitFor(async () => tree.every((p) => !processAlive(p)), 10_000, 20);
    await waitFor(async () => !processAlive(remote[0]!), 5000, 20);
    await waitFor(async () => h.sessionKeyDirs().length === 0, 10_000, 20);
    expect((await auditOf(session)).close_reason).toBe("client_closed");
  });

  it.runIf(mode === "native")("without socat the relay is plain node (eic-proxy.mjs), and the shell works the same", async () => {
    useProvider({ relay: "node" });
    try {
      const c = await openShell(s.wsUrl, ws, { token });
      await prompt(c);
      expect(treeOf(c.hello!.session).map(cmdlineOf).join("\n")).toMatch(/node \S+\/eic-proxy\.mjs \S+\/t\.sock/);
      expect((await c.run("echo $((6*7))")).trim()).toBe("42");
      c.send("exit\r");
      expect(await c.waitMessage("exit", 10_000)).toMatchObject({ code: 0 });
    } finally {
      useProvider();
    }
  });

  it("pins the host key recorded at provisioning: a different key on the instance refuses the connection", async () => {
    expect(inst.tags.MoleculeHostKey).toBe(inst.hostKey);
    const real = inst.tags.MoleculeHostKey!;
    inst.tags.MoleculeHostKey = generateEd25519("other").publicKey.split(" ").slice(0, 2).join(" ");
    try {
      const c = await openShell(s.wsUrl, ws, { token });
      const exit = await c.waitMessage("exit", 15_000);
      expect(exit.code).toBe(255);
      expect(c.text()).toMatch(/Host key verification failed/);
      expect((await c.closed).code).toBe(1000);
    } finally {
      inst.tags.MoleculeHostKey = real;
    }
    await waitFor(async () => h.sessionKeyDirs().length === 0, 10_000, 20);
  });
});

describe("Terminal failures reach the user as protocol errors", () => {
  const doc = /docs\/infra\/workspace-terminal\.md/;
  const cases: { name: string; arrange: () => () => void; code: number; error: string; message: RegExp; tunnel: boolean; only?: "native" | "aws-cli" }[] = [
    {
      name: "DescribeInstanceConnectEndpoints not allowed by IAM",
      arrange: () => {
        h.cloud.deny.add("ec2:DescribeInstanceConnectEndpoints");
        return () => h.cloud.deny.delete("ec2:DescribeInstanceConnectEndpoints");
      },
      code: 4502,
      error: "eic_wiring_incomplete",
      message: /may not call ec2:DescribeInstanceConnectEndpoints/,
      tunnel: false,
    },
    {
      name: "the worker's secret key is wrong: OpenTunnel's signature check refuses the presigned URL",
      arrange: () => {
        h.cloud.secrets.set(FAKE_KEY_ID, "the-secret-aws-has");
        return () => h.cloud.secrets.delete(FAKE_KEY_ID);
      },
      code: 4502,
      error: "eic_wiring_incomplete",
      message: /OpenTunnel refused (the worker's|aws-cli's) signed request.*InvalidSignatureException/,
      tunnel: true,
    },
    {
      name: "SendSSHPublicKey not allowed by IAM",
      arrange: () => {
        h.cloud.deny.add("ec2-instance-connect:SendSSHPublicKey");
        return () => h.cloud.deny.delete("ec2-instance-connect:SendSSHPublicKey");
      },
      code: 4502,
      error: "eic_wiring_incomplete",
      message: /ec2-instance-connect:SendSSHPublicKey/,
      tunnel: false,
    },
    {
      name: "no EIC Endpoint in the workspace VPC",
      arrange: () => {
        const saved = h.cloud.endpoints;
        h.cloud.endpoints = [];
        return () => (h.cloud.endpoints = saved);
      },
      code: 4502,
      error: "eic_wiring_incomplete",
      message: /no EC2 Instance Connect Endpoint in the VPC/,
      tunnel: false,
    },
    {
      name: "OpenTunnel not allowed by IAM",
      arrange: () => {
        h.cloud.deny.add("ec2-instance-connect:OpenTunnel");
        return () => h.cloud.deny.delete("ec2-instance-connect:OpenTunnel");
      },
      code: 4502,
      error: "eic_wiring_incomplete",
      message: /ec2-instance-connect:OpenTunnel/,
      tunnel: true,
    },
    {
      name: "the tunnel does not come up (no security group rule from the endpoint to 22)",
      arrange: () => {
        inst.sgAllowsEice = false;
        return () => (inst.sgAllowsEice = true);
      },
      code: 4502,
      error: "eic_wiring_incomplete",
      message: /did not come up.*22\/tcp/,
      tunnel: true,
    },
    {
      name: "the AMI does not accept pushed keys (no EC2 Instance Connect on the instance)",
      arrange: () => {
        inst.eicInstalled = false;
        return () => (inst.eicInstalled = true);
      },
      code: 4502,
      error: "eic_wiring_incomplete",
      message: /refused the key pushed with SendSSHPublicKey/,
      tunnel: true,
    },
    {
      name: "aws-cli not installed on the worker",
      arrange: () => {
        useProvider({ childEnv: { ...h.options().childEnv, PATH: SYSTEM_PATH } });
        return () => useProvider();
      },
      code: 4502,
      error: "eic_wiring_incomplete",
      message: /aws-cli is not installed on the terminal worker/,
      tunnel: false,
      only: "aws-cli",
    },
    {
      name: "aws-cli v1 (no open-tunnel) on the worker",
      arrange: () => {
        useProvider({ childEnv: { ...h.options().childEnv, PATH: `${FAKE_AWS_V1_BIN}:${SYSTEM_PATH}` } });
        return () => useProvider();
      },
      code: 4502,
      error: "eic_wiring_incomplete",
      message: /aws-cli 1\.45\.11 has no "ec2-instance-connect open-tunnel"/,
      tunnel: false,
      only: "aws-cli",
    },
    {
      name: "ssh not installed on the worker",
      arrange: () => {
        useProvider({ childEnv: { ...h.options().childEnv, PATH: FAKE_AWS_BIN } });
        return () => useProvider();
      },
      code: 4502,
      error: "eic_wiring_incomplete",
      message: /ssh is not installed on the terminal worker/,
      tunnel: false,
    },
    {
      name: "the instance is stopped",
      arrange: () => {
        h.cloud.setState(inst.id, "stopped");
        return () => h.cloud.setState(inst.id, "running");
      },
      code: 4409,
      error: "not_ready",
      message: /is stopped, not running/,
      tunnel: false,
    },
  ];

  for (const k of cases.filter((x) => !x.only || x.only === mode)) {
    it(`${k.name}: ${k.error} (${k.code})`, async () => {
      const restore = k.arrange();
      const tunnelsBefore = h.cloud.callsOf("OpenTunnel").length;
      try {
        const { c, err, closed } = await failure();
        const session = c.hello?.session ?? null;
        expect(err).toMatchObject({ type: "error", code: k.error });
        expect(err.message).toMatch(k.message);
        if (k.error === "eic_wiring_incomplete") expect(err.message).toMatch(doc);
        expect(closed.code).toBe(k.code);
        expect(h.cloud.callsOf("OpenTunnel").length > tunnelsBefore).toBe(k.tunnel);
        expect((await auditOf(session)).close_reason).toBe(k.error);
        await waitFor(async () => h.sessionKeyDirs().length === 0, 10_000, 20);
        await waitFor(async () => s.worker!.terminal!.sessions.size === 0, 10_000, 20);
      } finally {
        restore();
      }
    });
  }
});

describe(`The EIC Endpoint's limits (${mode} tunnel)`, () => {
  it("at 20 concurrent connections on the endpoint the Terminal fails with no_capacity (4503) and opens once one is free", async () => {
    // 20 other tunnels (terminals into another instance of this VPC, an idle listener here) hold the endpoint's connections.
    const [eice] = h.cloud.endpoints;
    const idle = createServer(() => {});
    await new Promise<void>((r) => idle.listen(0, "127.0.0.1", r));
    const other = { ...inst, id: "i-0000000000000beef", privateIp: "10.0.9.9", sshPort: (idle.address() as AddressInfo).port, tags: {} } as FakeInstance;
    h.cloud.instances.set(other.id, other);
    const held = [];
    for (let n = 0; n < 20; n++) {
      const url = await presignOpenTunnel(
        { dnsName: `127.0.0.1:${h.cloud.eicEndpointPort}`, endpointId: eice!.id, privateIp: other.privateIp, remotePort: 22 },
        { region: h.cloud.region, credentials: { accessKeyId: FAKE_KEY_ID, secretAccessKey: FAKE_SECRET }, scheme: "ws" },
      );
      held.push(await openTunnel(url));
    }
    expect(h.cloud.activeTunnels.get(eice!.id)).toBe(20);
    try {
      const { c, err, closed } = await failure();
      expect(err).toMatchObject({ type: "error", code: "no_capacity" });
      expect(err.message).toMatch(/20 concurrent connections/);
      expect(closed.code).toBe(4503);
      expect((await auditOf(c.hello?.session ?? null)).close_reason).toBe("no_capacity");
      await waitFor(async () => h.sessionKeyDirs().length === 0, 10_000, 20);
    } finally {
      held.shift()!.close(1000);
    }
    await waitFor(async () => h.cloud.activeTunnels.get(eice!.id) === 19, 10_000, 20);
    const c = await openShell(s.wsUrl, ws, { token });
    await prompt(c);
    c.send("exit\r");
    await c.waitMessage("exit", 10_000);
    for (const t of held) t.close(1000);
    await waitFor(async () => h.cloud.activeTunnels.get(eice!.id) === 0, 10_000, 20);
    h.cloud.instances.delete(other.id);
    idle.close();
  });

  it("at the tunnel's maximum duration (AWS: 1 hour) the session ends with session_expired (4410) saying why", async () => {
    useProvider({ tunnelMaxSec: 2 });
    try {
      const c = await openShell(s.wsUrl, ws, { token });
      await prompt(c);
      expect(h.cloud.callsOf("OpenTunnel").at(-1)!.params.maxTunnelDuration).toBe("2");
      const err = await c.waitMessage("error", 15_000);
      expect(err).toMatchObject({ type: "error", code: "session_expired" });
      expect(err.message).toMatch(/maximum duration of 2 s .*1 hour.*open the Terminal again/);
      expect((await c.closed).code).toBe(4410);
      expect((await auditOf(c.hello!.session)).close_reason).toBe("session_expired");
      await waitFor(async () => h.sessionKeyDirs().length === 0, 10_000, 20);
    } finally {
      useProvider();
    }
  });
});
