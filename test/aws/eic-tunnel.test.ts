/**
 * The native EC2 Instance Connect tunnel against the fake endpoint: the presigned
 * URL is checked as AWS checks it (signature with the test secret, expiry, scope,
 * session token), refusals come back classified with AWS's code and request id, and
 * bytes flow both ways in binary frames of at most 65,000 bytes. Also the worker's
 * end (eic-bridge.ts) and eic-proxy.mjs relaying ssh's stdin/stdout to it.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bridgeTunnel } from "../../apps/terminal-worker/src/providers/aws/eic-bridge.ts";
import type { AwsProviderOptions } from "../../apps/terminal-worker/src/providers/aws/config.ts";
import { createEc2 } from "../../apps/terminal-worker/src/providers/aws/ec2.ts";
import { createTunnelPlanner, EIC_PROXY_SCRIPT, pickEndpoint } from "../../apps/terminal-worker/src/providers/aws/eic-tunnel.ts";
import { presignOpenTunnel, type AwsCredentials } from "../../apps/terminal-worker/src/providers/aws/eic-signer.ts";
import { handshakeError, MAX_FRAME, openTunnel, pipeTunnel, TunnelError } from "../../apps/terminal-worker/src/providers/aws/eic-wire.mjs";
import { waitFor } from "../helpers/http.ts";
import { FAKE_KEY_ID, FAKE_SECRET, FakeCloud, type FakeInstance } from "./fake-cloud.ts";

let cloud: FakeCloud;
let echo: Server;
let dir: string;
const creds: AwsCredentials = { accessKeyId: FAKE_KEY_ID, secretAccessKey: FAKE_SECRET };
const IP = "10.0.7.7";

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "eic-tunnel-"));
  cloud = await new FakeCloud({ dir }).start();
  // The "instance's port 22": an echo server on loopback.
  echo = createServer((c) => c.pipe(c));
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
  const inst = { id: "i-0000000000000e740", privateIp: IP, state: "running", sgAllowsEice: true, sshPort: (echo.address() as AddressInfo).port, tags: {} } as unknown as FakeInstance;
  cloud.instances.set(inst.id, inst);
});
afterAll(async () => {
  await cloud?.close();
  echo?.close();
  rmSync(dir, { recursive: true, force: true });
});

const eice = () => cloud.endpoints[0]!.id;
const url = (o: { credentials?: AwsCredentials; now?: Date; endpointId?: string; privateIp?: string; maxTunnelSec?: number } = {}) =>
  presignOpenTunnel(
    { dnsName: `127.0.0.1:${cloud.eicEndpointPort}`, endpointId: o.endpointId ?? eice(), privateIp: o.privateIp ?? IP, remotePort: 22, ...(o.maxTunnelSec ? { maxTunnelSec: o.maxTunnelSec } : {}) },
    { region: cloud.region, credentials: o.credentials ?? creds, scheme: "ws", ...(o.now ? { now: o.now } : {}) },
  );
async function refusal(u: string): Promise<TunnelError> {
  const err = await openTunnel(u).then(
    (ws) => {
      ws.close();
      throw new Error("the tunnel opened");
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TunnelError);
  return err as TunnelError;
}

describe("openTunnel presigned URL", () => {
  it("is signed as aws-cli signs it: ec2-instance-connect scope, 60 s, host only", async () => {
    const u = new URL(await url());
    expect(u.pathname).toBe("/openTunnel");
    expect(Object.fromEntries(u.searchParams)).toMatchObject({
      instanceConnectEndpointId: eice(),
      remotePort: "22",
      privateIpAddress: IP,
      "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
      "X-Amz-Expires": "60",
      "X-Amz-SignedHeaders": "host",
    });
    expect(u.searchParams.get("X-Amz-Credential")).toMatch(new RegExp(`^${FAKE_KEY_ID}/\\d{8}/us-east-1/ec2-instance-connect/aws4_request$`));
  });

  it("a wrong signature, an expired URL, a tampered query, a missing permission and an unknown endpoint answer as AWS does", async () => {
    const wrong = await refusal(await url({ credentials: { ...creds, secretAccessKey: "not-the-secret" } }));
    expect(wrong).toMatchObject({ kind: "credentials", status: 403, code: "InvalidSignatureException" });
    expect(wrong.message).toMatch(/signature we calculated does not match/);
    expect(wrong.requestId).toMatch(/^[0-9a-f-]{36}$/);

    const expired = await refusal(await url({ now: new Date(Date.now() - 61_000) }));
    expect(expired).toMatchObject({ kind: "credentials", status: 403, code: "InvalidSignatureException" });
    expect(expired.message).toMatch(/Signature expired/);
    // 50 s old is still good (60 s expiry).
    (await openTunnel(await url({ now: new Date(Date.now() - 50_000) }))).close(1000);

    const tampered = (await url()).replace(`privateIpAddress=${IP}`, "privateIpAddress=10.0.7.8");
    expect(await refusal(tampered)).toMatchObject({ kind: "credentials", code: "InvalidSignatureException" });

    expect(await refusal(await url({ credentials: { accessKeyId: "AKIAUNKNOWN000000000", secretAccessKey: "x" } }))).toMatchObject({
      kind: "credentials",
      code: "UnrecognizedClientException",
    });

    cloud.deny.add("ec2-instance-connect:OpenTunnel");
    try {
      const denied = await refusal(await url());
      expect(denied).toMatchObject({ kind: "denied", status: 403, code: "AccessDeniedException" });
      expect(denied.message).toMatch(/not authorized to perform: ec2-instance-connect:OpenTunnel/);
    } finally {
      cloud.deny.delete("ec2-instance-connect:OpenTunnel");
    }

    expect(await refusal(await url({ endpointId: "eice-0000000000000dead" }))).toMatchObject({ kind: "unknown_endpoint", status: 400, code: "InvalidParameter" });
  });

  it("temporary credentials: the session token is in the query and signed", async () => {
    const temp = { accessKeyId: "ASIAFAKEMOLECULE0002", secretAccessKey: "temp-secret", sessionToken: "FwoGZXIvYXdzE+/token==" };
    cloud.accessKeys.add(temp.accessKeyId);
    cloud.secrets.set(temp.accessKeyId, temp.secretAccessKey);
    cloud.sessionTokens.set(temp.accessKeyId, temp.sessionToken);
    const u = await url({ credentials: temp });
    expect(new URL(u).searchParams.get("X-Amz-Security-Token")).toBe(temp.sessionToken);
    (await openTunnel(u)).close(1000);
    // Another token under the same signature: refused.
    const other = u.replace(encodeURIComponent(temp.sessionToken), encodeURIComponent("FwoGZXIvYXdzE+/other=="));
    expect(await refusal(other)).toMatchObject({ kind: "credentials" });
  });
});

describe("the tunnel's bytes", () => {
  it("carries 300 KB both ways in binary frames of at most 65,000 bytes", async () => {
    const ws = await openTunnel(await url());
    const input = new PassThrough();
    const output = new PassThrough();
    const chunks: Buffer[] = [];
    output.on("data", (b: Buffer) => chunks.push(b));
    const done = pipeTunnel(ws, input, output);
    const payload = Buffer.alloc(300_000, 0).map((_, i) => i % 251);
    cloud.largestFrame = 0;
    input.write(payload);
    await waitFor(async () => Buffer.concat(chunks).length >= payload.length, 5000, 10);
    expect(Buffer.concat(chunks).equals(payload)).toBe(true);
    expect(cloud.oversizeFrames).toBe(0);
    expect(cloud.largestFrame).toBe(MAX_FRAME);
    input.end();
    expect(await done).toEqual({ bytesIn: payload.length, bytesOut: payload.length });
  });

  it("bytes that arrive together with the 101 are not lost", async () => {
    for (let n = 0; n < 5; n++) {
      cloud.tunnelFaults.push({ greet: "SSH-2.0-OpenSSH_9.2p1\r\n" });
      const ws = await openTunnel(await url());
      // A turn of the event loop before anyone listens, as in eic-proxy.mjs.
      await new Promise((r) => setImmediate(r));
      const output = new PassThrough();
      let got = "";
      output.on("data", (b: Buffer) => (got += b.toString()));
      const input = new PassThrough();
      const done = pipeTunnel(ws, input, output);
      await waitFor(async () => got.startsWith("SSH-2.0-OpenSSH_9.2p1\r\n"), 10_000, 5);
      input.end();
      await done;
    }
  });

  it("a text frame is an error, a close other than 1000 carries its reason, the maximum duration is named", async () => {
    const run = async (u: string) => {
      const ws = await openTunnel(u);
      const input = new PassThrough();
      return pipeTunnel(ws, input, new PassThrough(), { maxTunnelSec: 60, openedAt: Date.now() }).then(
        () => null,
        (e: TunnelError) => e,
      );
    };
    cloud.tunnelFaults.push({ text: '{"ErrorCode":"InternalServerError","Message":"tunnel failed"}' });
    expect(await run(await url())).toMatchObject({ kind: "error_frame", message: expect.stringMatching(/tunnel failed/) });
    cloud.tunnelFaults.push({ close: { code: 1011, reason: "Failed to connect to 10.0.7.7:22: connection timed out" } });
    expect(await run(await url())).toMatchObject({ kind: "unreachable", message: expect.stringMatching(/close 1011: Failed to connect to 10\.0\.7\.7:22/) });
    // The endpoint ends the tunnel at maxTunnelDuration (1 s here).
    const ws = await openTunnel(await url({ maxTunnelSec: 1 }));
    const input = new PassThrough();
    const t0 = performance.now();
    const ended = pipeTunnel(ws, input, new PassThrough(), { maxTunnelSec: 1, openedAt: t0 }).then(
      () => null,
      (e: TunnelError) => e,
    );
    input.write("keep the tunnel busy");
    expect(await ended).toMatchObject({ kind: "max_duration", message: expect.stringMatching(/maximum duration of 1 s/) });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(900);
  });
});

describe("the worker-held tunnel behind a Unix socket, and eic-proxy.mjs as ssh's relay", () => {
  it("relays stdin and stdout through the socket to the tunnel; the socket takes one connection", async () => {
    const ws = await openTunnel(await url());
    const sock = join(dir, "t.sock");
    const b = await bridgeTunnel(ws, sock, { maxTunnelSec: 3600, openedAt: Date.now(), target: "i-0000000000000e740", acceptMs: 5000 });
    const p = spawn(process.execPath, [EIC_PROXY_SCRIPT, sock], { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (x: Buffer) => (out += x.toString()));
    p.stdin.write("SSH-2.0-test\r\n");
    await waitFor(async () => out === "SSH-2.0-test\r\n", 5000, 10);
    // A second client (anyone else on the host) gets nothing.
    const second = spawn(process.execPath, [EIC_PROXY_SCRIPT, sock], { stdio: ["pipe", "pipe", "pipe"] });
    expect(await new Promise((r) => second.on("exit", r))).not.toBeNull();
    p.stdin.end();
    expect(await new Promise((r) => p.on("exit", r))).toBe(0);
    expect(b.error()).toBeNull();
    await b.close();
    expect(existsSync(sock)).toBe(false);
  });

  it("records why the tunnel ended (the endpoint's close reason) for the diagnosis", async () => {
    cloud.tunnelFaults.push({ close: { code: 1011, reason: "Failed to connect to 10.0.7.7:22: connection timed out" } });
    const ws = await openTunnel(await url());
    const sock = join(dir, "t2.sock");
    const b = await bridgeTunnel(ws, sock, { maxTunnelSec: 3600, openedAt: Date.now(), target: "i-0000000000000e740", acceptMs: 5000 });
    const p = spawn(process.execPath, [EIC_PROXY_SCRIPT, sock], { stdio: ["pipe", "pipe", "pipe"] });
    await new Promise((r) => p.on("exit", r));
    await waitFor(async () => b.error() !== null, 10_000, 10);
    expect(b.error()).toMatchObject({ kind: "unreachable", message: expect.stringMatching(/1011: Failed to connect/) });
    await b.close();
  });

  it("nothing connecting in time closes the tunnel and frees the endpoint's slot", async () => {
    const before = cloud.activeTunnels.get(eice()) ?? 0;
    const ws = await openTunnel(await url());
    await waitFor(async () => cloud.activeTunnels.get(eice()) === before + 1, 10_000, 10);
    const b = await bridgeTunnel(ws, join(dir, "t3.sock"), { maxTunnelSec: 3600, openedAt: Date.now(), target: "i-0000000000000e740", acceptMs: 200 });
    await waitFor(async () => cloud.activeTunnels.get(eice()) === before, 10_000, 10);
    await b.close();
  });
});

describe("endpoint discovery with the SDK against the fake EC2", () => {
  const options = (childEnv: Record<string, string> = {}) =>
    ({ region: cloud.region, ec2Endpoint: cloud.ec2Url, sdkMaxAttempts: 1, childEnv, tunnelMaxSec: 3600, connectTimeoutSec: 5 }) as unknown as AwsProviderOptions;
  const inst = { id: "i-0000000000000e740", state: "running", stateReason: null, tags: {}, launchTime: null, vpcId: "vpc-0fa1ce0000000000a", subnetId: "subnet-0fa1ce0000000000b", privateIp: IP };

  it("prefers the instance's subnet, FipsDnsName with AWS_USE_FIPS_ENDPOINT=true, and names a denied Describe call", async () => {
    process.env.AWS_ACCESS_KEY_ID = FAKE_KEY_ID;
    process.env.AWS_SECRET_ACCESS_KEY = FAKE_SECRET;
    const saved = cloud.endpoints;
    cloud.endpoints = [
      { id: "eice-00000000000000001", vpcId: inst.vpcId, subnetId: "subnet-0fa1ce0000000000a", state: "create-complete" },
      { id: "eice-00000000000000002", vpcId: inst.vpcId, subnetId: inst.subnetId, state: "update-complete", fipsDnsName: "127.0.0.2:443" },
      { id: "eice-00000000000000003", vpcId: inst.vpcId, subnetId: inst.subnetId, state: "delete-in-progress" },
    ];
    const ec2 = createEc2(options());
    try {
      expect((await createTunnelPlanner(options(), ec2).target(inst)).endpoint.id).toBe("eice-00000000000000002");
      expect((await createTunnelPlanner(options({ AWS_USE_FIPS_ENDPOINT: "true" }), ec2).target(inst)).dnsName).toBe("127.0.0.2:443");
      const calls = cloud.callsOf("DescribeInstanceConnectEndpoints").at(-1)!.params;
      expect(calls).toMatchObject({ "Filter.1.Name": "vpc-id", "Filter.1.Value.1": inst.vpcId, "Filter.2.Name": "state", "Filter.2.Value.1": "create-complete" });
      cloud.endpoints = [];
      await expect(createTunnelPlanner(options(), ec2).target(inst)).rejects.toThrow(/no EC2 Instance Connect Endpoint in the VPC of i-0000000000000e740 \(vpc-0fa1ce0000000000a\)/);
      cloud.deny.add("ec2:DescribeInstanceConnectEndpoints");
      await expect(createTunnelPlanner(options(), ec2).target(inst)).rejects.toMatchObject({
        reason: "eic_wiring_incomplete",
        message: expect.stringMatching(/may not call ec2:DescribeInstanceConnectEndpoints.*#iam-policy/),
      });
    } finally {
      cloud.deny.delete("ec2:DescribeInstanceConnectEndpoints");
      cloud.endpoints = saved;
      ec2.destroy();
    }
  });

  it("an endpoint answering 5xx is AWS-side trouble, not a wiring problem", () => {
    expect(handshakeError(503, '{"ErrorCode":"ServiceUnavailableException","Message":"try later"}', "r-1")).toMatchObject({ kind: "unavailable" });
    expect(handshakeError(429, '{"ErrorCode":"ConnectionLimitExceededException","Message":"x"}', "r-1")).toMatchObject({ kind: "limit" });
  });
});

describe("endpoint choice", () => {
  it("prefers an endpoint in the instance's subnet, else any of the VPC", () => {
    const e = (id: string, subnetId: string) => ({ id, state: "create-complete", subnetId, dnsName: `${id}.example`, fipsDnsName: null });
    const list = [e("eice-00000000000000001", "subnet-a"), e("eice-00000000000000002", "subnet-b")];
    expect(pickEndpoint(list, "subnet-b")?.id).toBe("eice-00000000000000002");
    expect(pickEndpoint(list, "subnet-c")?.id).toBe("eice-00000000000000001");
    expect(pickEndpoint([], "subnet-a")).toBeNull();
  });
});
