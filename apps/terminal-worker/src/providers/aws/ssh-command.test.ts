import { describe, expect, it } from "vitest";
import { buildSshArgs, diagnoseSshExit, knownHostsLine, type SshCommandInput } from "./ssh-command.ts";

const base: SshCommandInput = {
  sshBin: "/usr/bin/ssh",
  awsCli: "aws",
  instanceId: "i-0123456789abcdef0",
  osUser: "ec2-user",
  container: "ws-0a1b2c3d-4e5",
  region: "us-east-1",
  keyFile: "/keys/s-x/id_ed25519",
  knownHostsFile: null,
  hostKeyType: null,
  connectTimeoutSec: 20,
  keepaliveSec: 15,
  keepaliveCount: 4,
  tunnelMaxSec: 3600,
  extraOptions: [],
};

const opt = (args: string[], key: string) => args.filter((a, i) => args[i - 1] === "-o" && a.startsWith(`${key}=`)).map((a) => a.slice(key.length + 1));

describe("buildSshArgs", () => {
  it("runs docker exec through an open-tunnel ProxyCommand as the OS user", () => {
    const a = buildSshArgs(base);
    expect(a[0]).toBe("-tt");
    expect(a.slice(-8)).toEqual(["-l", "ec2-user", "i-0123456789abcdef0", "docker", "exec", "-it", "ws-0a1b2c3d-4e5", "/bin/bash"]);
    expect(opt(a, "ProxyCommand")).toEqual(["aws ec2-instance-connect open-tunnel --instance-id i-0123456789abcdef0 --region us-east-1 --max-tunnel-duration 3600"]);
    expect(opt(a, "IdentitiesOnly")).toEqual(["yes"]);
    expect(opt(a, "ServerAliveInterval")).toEqual(["15"]);
    expect(opt(a, "ServerAliveCountMax")).toEqual(["4"]);
    expect(a.slice(a.indexOf("-e"), a.indexOf("-e") + 2)).toEqual(["-e", "none"]);
    expect(a.slice(a.indexOf("-i"), a.indexOf("-i") + 2)).toEqual(["-i", "/keys/s-x/id_ed25519"]);
  });

  it("pins the host key when one is known, and says so when not", () => {
    const unpinned = buildSshArgs(base);
    expect(opt(unpinned, "StrictHostKeyChecking")).toEqual(["no"]);
    expect(opt(unpinned, "UserKnownHostsFile")).toEqual(["/dev/null"]);
    const pinned = buildSshArgs({ ...base, knownHostsFile: "/keys/s-x/known_hosts", hostKeyType: "ssh-ed25519" });
    expect(opt(pinned, "StrictHostKeyChecking")).toEqual(["yes"]);
    expect(opt(pinned, "UserKnownHostsFile")).toEqual(["/keys/s-x/known_hosts"]);
    expect(opt(pinned, "HostKeyAlias")).toEqual(["i-0123456789abcdef0"]);
    expect(opt(pinned, "HostKeyAlgorithms")).toEqual(["ssh-ed25519"]);
  });

  it("refuses anything but strict ids where ssh or a shell would interpret them", () => {
    for (const instanceId of ["i-123", "i-0123456789abcdef0; rm -rf /", "i-0123456789ABCDEF0", "$(id)", "i-0123456789abcdef0 -oProxyCommand=x"]) {
      expect(() => buildSshArgs({ ...base, instanceId })).toThrow(/instance id/);
    }
    for (const container of ["ws x", "-ws", "ws;id", "ws$(id)", ""]) expect(() => buildSshArgs({ ...base, container })).toThrow(/container/);
    for (const osUser of ["Root", "ec2 user", "-oProxyCommand", "a;b", ""]) expect(() => buildSshArgs({ ...base, osUser })).toThrow(/OS user/);
    for (const awsCli of ["aws;id", "aws cli", "$(aws)"]) expect(() => buildSshArgs({ ...base, awsCli })).toThrow(/aws-cli/);
    expect(() => buildSshArgs({ ...base, region: "us-east-1;id" })).toThrow(/region/);
  });

  it("puts configured options before its own, and clamps the tunnel duration to AWS's 3600 s", () => {
    const a = buildSshArgs({ ...base, extraOptions: ["Ciphers=aes256-gcm@openssh.com"], tunnelMaxSec: 99_999 });
    expect(a.indexOf("Ciphers=aes256-gcm@openssh.com")).toBeLessThan(a.indexOf("IdentitiesOnly=yes"));
    expect(opt(a, "ProxyCommand")[0]).toContain("--max-tunnel-duration 3600");
  });

  it("writes known_hosts lines under the instance id", () => {
    expect(knownHostsLine("i-0123456789abcdef0", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG")).toBe("i-0123456789abcdef0 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG\n");
    expect(() => knownHostsLine("i-0123456789abcdef0", "ssh-ed25519 AAAA\nevil")).toThrow();
  });
});

describe("diagnoseSshExit", () => {
  const c = { instanceId: "i-0123456789abcdef0", osUser: "ec2-user", connectTimeoutSec: 20 };
  const d = (tail: string, code = 255, ranMs = 800) => diagnoseSshExit({ code, signal: null, tail: Buffer.from(tail), ranMs }, c);

  it("names a missing EIC endpoint", () => {
    const r = d("\r\nThere are no available instance connect endpoints.\r\nkex_exchange_identification: Connection closed by remote host\r\nConnection closed by UNKNOWN port 65535\r\n");
    expect(r?.reason).toBe("eic_wiring_incomplete");
    expect(r?.message).toMatch(/no EC2 Instance Connect Endpoint in the VPC of i-0123456789abcdef0/);
    expect(r?.message).toContain("docs/infra/workspace-terminal.md");
  });

  it("names a missing OpenTunnel permission", () => {
    const r = d(
      '{"ErrorCode":"AccessDeniedException","Message":"User: arn:aws:iam::123456789012:user/w is not authorized to perform: ec2-instance-connect:OpenTunnel on resource: arn:aws:ec2:us-east-1:123456789012:instance-connect-endpoint/eice-1"}\r\nAWS_ERROR_HTTP_WEBSOCKET_UPGRADE_FAILURE: Failed to upgrade HTTP connection to Websocket.\r\n',
    );
    expect(r?.reason).toBe("eic_wiring_incomplete");
    expect(r?.message).toMatch(/ec2-instance-connect:OpenTunnel/);
  });

  it("names aws-cli v1 (no open-tunnel) and a missing aws binary", () => {
    expect(d("aws: error: argument operation: Invalid choice, valid choices are:\r\n")?.message).toMatch(/aws-cli v2/);
    expect(d("/bin/sh: 1: exec: aws: not found\r\nkex_exchange_identification: Connection closed by remote host\r\n")?.message).toMatch(/aws-cli is not installed/);
  });

  it("names a refused key and a tunnel that never came up", () => {
    expect(d("ec2-user@i-0123456789abcdef0: Permission denied (publickey).\r\n")?.message).toMatch(/refused the key/);
    expect(d("kex_exchange_identification: Connection closed by remote host\r\nConnection closed by UNKNOWN port 65535\r\n")?.message).toMatch(/did not come up.*22\/tcp/s);
    expect(d("Connection timed out during banner exchange\r\n", 255, 21_000)?.reason).toBe("eic_wiring_incomplete");
  });

  it("leaves real exits alone: the shell's own code, a long session dropping, a host key refusal", () => {
    expect(d("There are no available instance connect endpoints.", 1)).toBeNull();
    expect(d("logout\r\n", 0)).toBeNull();
    expect(d("Connection closed by UNKNOWN port 65535\r\n", 255, 1_800_000)).toBeNull();
    expect(d("molecule-eic[closed]: the EC2 Instance Connect Endpoint closed the tunnel (1011: reset)\r\n", 255, 1_800_000)).toBeNull();
    expect(d("Host key verification failed.\r\n")).toBeNull();
    expect(d("exit\r\n", 255)).toBeNull();
  });
});

describe("diagnoseSshExit: the native tunnel's lines and AWS's limits", () => {
  const c = { instanceId: "i-0123456789abcdef0", osUser: "ec2-user", connectTimeoutSec: 20, tunnelMaxSec: 3600 };
  const d = (tail: string, ranMs = 800) => diagnoseSshExit({ code: 255, signal: null, tail: Buffer.from(tail), ranMs }, c);
  const line = (kind: string, msg: string) => `molecule-eic[${kind}]: ${msg}\r\nkex_exchange_identification: Connection closed by remote host\r\n`;

  it("names which call was refused and why", () => {
    const denied = d(line("denied", "OpenTunnel refused (403 AccessDeniedException, request id r-1): User: x is not authorized to perform: ec2-instance-connect:OpenTunnel"));
    expect(denied).toMatchObject({ reason: "eic_wiring_incomplete" });
    expect(denied!.message).toMatch(/may not call ec2-instance-connect:OpenTunnel \(OpenTunnel refused \(403 AccessDeniedException, request id r-1\)/);
    expect(d(line("credentials", "OpenTunnel rejected ... (403 InvalidSignatureException): Signature expired"))!.message).toMatch(/signed request.*clock/);
    expect(d(line("unknown_endpoint", "OpenTunnel: no such EC2 Instance Connect Endpoint (400 InvalidParameter)"))!.message).toMatch(/Endpoint is gone/);
    expect(d(line("unreachable", "the endpoint closed the tunnel before port 22 of the instance answered (close 1011: timed out)"))!.message).toMatch(/did not come up.*1011: timed out.*22\/tcp/);
  });

  it("the endpoint's 20 connections: no_capacity, in both modes", () => {
    expect(d(line("limit", "OpenTunnel refused: the endpoint's concurrent connection limit is reached (429 ConnectionLimitExceededException)"))).toMatchObject({
      reason: "no_capacity",
      message: expect.stringMatching(/all of its 20 concurrent connections.*Close another Terminal/),
    });
    expect(d('{"ErrorCode":"ConnectionLimitExceededException"}\r\nAWS_ERROR_HTTP_WEBSOCKET_UPGRADE_FAILURE: Failed (status 429)\r\n')?.reason).toBe("no_capacity");
  });

  it("the tunnel's maximum duration: session_expired, whichever client saw it", () => {
    expect(d(line("max_duration", "the tunnel reached its maximum duration of 3600 s"), 3_600_100)?.reason).toBe("session_expired");
    expect(d("Connection closed by UNKNOWN port 65535\r\n", 3_600_000)).toMatchObject({ reason: "session_expired", message: expect.stringMatching(/maximum duration of 3600 s.*1 hour.*open the Terminal again/) });
    expect(diagnoseSshExit({ code: 255, signal: null, tail: Buffer.from(""), ranMs: 2100 }, { ...c, tunnelMaxSec: 2 })?.reason).toBe("session_expired");
  });
});

describe("buildSshArgs: native tunnel", () => {
  it("relays to the worker's tunnel socket with socat or plain node, and refuses paths a shell would interpret", () => {
    const socat = { relay: "socat" as const, bin: "/usr/bin/socat", socket: "/keys/s-x/t.sock" };
    expect(opt(buildSshArgs({ ...base, native: socat }), "ProxyCommand")).toEqual(["/usr/bin/socat - UNIX-CONNECT:/keys/s-x/t.sock"]);
    const node = { relay: "node" as const, bin: "/usr/bin/node", script: "/app/eic-proxy.mjs", socket: "/keys/s-x/t.sock" };
    expect(opt(buildSshArgs({ ...base, native: node }), "ProxyCommand")).toEqual(["/usr/bin/node /app/eic-proxy.mjs /keys/s-x/t.sock"]);
    for (const bad of ["/keys/s x/t.sock", "/k/$(id)", "rel/path", "/k;id", "/k/a,fork", "/k/a:b"]) {
      expect(() => buildSshArgs({ ...base, native: { ...socat, socket: bad } })).toThrow(/tunnel socket/);
    }
    expect(() => buildSshArgs({ ...base, native: { ...node, bin: "/opt/my node/bin/node" } })).toThrow(/node path/);
  });
});
