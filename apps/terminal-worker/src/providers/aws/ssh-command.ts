import { CONTAINER_NAME_RE, INSTANCE_ID_RE, OS_USER_RE } from "@molecule/shared";
import type { TerminalDiagnosis } from "../types.ts";
import { EXECUTABLE_RE, REGION_RE } from "./config.ts";
import { INFRA_DOC } from "./errors.ts";
import { SAFE_PATH_RE } from "./eic-tunnel.ts";

export interface SshCommandInput {
  sshBin: string;
  awsCli: string;
  instanceId: string;
  osUser: string;
  container: string;
  region: string;
  keyFile: string;
  /** known_hosts file with the pinned key (written next to the key), or null: not pinned. */
  knownHostsFile: string | null;
  /** Key type of the pinned key (restricts HostKeyAlgorithms to it). */
  hostKeyType: string | null;
  connectTimeoutSec: number;
  keepaliveSec: number;
  keepaliveCount: number;
  tunnelMaxSec: number;
  extraOptions: string[];
  /**
   * Native mode (MOLECULE_AWS_TUNNEL=native): the worker holds the tunnel behind the
   * Unix socket `socket`; the ProxyCommand only relays to it (socat, or plain node
   * running eic-proxy.mjs), instead of aws-cli's open-tunnel.
   */
  native?: { relay: "socat"; bin: string; socket: string } | { relay: "node"; bin: string; script: string; socket: string } | null;
  /** An exec session's argv, run with docker exec in the container instead of /bin/bash. */
  command?: string[];
  /** With `command`: false runs it without a PTY (ssh -T, docker exec -i). */
  pty?: boolean;
}

/**
 * One argument for the remote login shell, which is what ssh hands its command to: single
 * quotes make every byte literal (a quote itself is closed, escaped, reopened).
 */
export function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, "'\\''")}'`;
}

function check(re: RegExp, v: string, what: string): string {
  if (!re.test(v)) throw new Error(`invalid ${what} ${JSON.stringify(v)}`);
  return v;
}

/**
 * argv for `ssh -tt ... <user>@<instance> docker exec -it <container> /bin/bash`
 * through an EC2 Instance Connect Endpoint. ssh hands ProxyCommand to /bin/sh and
 * the remote command to the login shell, so every value that reaches either is
 * checked against a strict pattern first.
 */
export function buildSshArgs(i: SshCommandInput): string[] {
  const instanceId = check(INSTANCE_ID_RE, i.instanceId, "instance id");
  const osUser = check(OS_USER_RE, i.osUser, "OS user");
  const container = check(CONTAINER_NAME_RE, i.container, "container name");
  const region = check(REGION_RE, i.region, "region");
  const tunnelMax = Math.min(3600, Math.max(1, Math.floor(i.tunnelMaxSec)));
  // stdio tunnel: no local port to pick or race for, and it dies with ssh.
  const proxy = i.native
    ? i.native.relay === "socat"
      ? `${check(SAFE_PATH_RE, i.native.bin, "socat path")} - UNIX-CONNECT:${check(SAFE_PATH_RE, i.native.socket, "tunnel socket")}`
      : `${check(SAFE_PATH_RE, i.native.bin, "node path")} ${check(SAFE_PATH_RE, i.native.script, "relay script path")} ${check(SAFE_PATH_RE, i.native.socket, "tunnel socket")}`
    : `${check(EXECUTABLE_RE, i.awsCli, "aws-cli path")} ec2-instance-connect open-tunnel --instance-id ${instanceId} --region ${region} --max-tunnel-duration ${tunnelMax}`;
  const o = (kv: string) => ["-o", kv];
  const hostKeys = i.knownHostsFile
    ? [...o(`UserKnownHostsFile=${i.knownHostsFile}`), ...o("StrictHostKeyChecking=yes"), ...(i.hostKeyType ? o(`HostKeyAlgorithms=${i.hostKeyType}`) : [])]
    : // Unpinned (no key learned at provisioning): the tunnel itself is authorised by IAM to this instance's ENI.
      [...o("UserKnownHostsFile=/dev/null"), ...o("StrictHostKeyChecking=no")];
  const piped = i.command !== undefined && i.pty === false;
  return [
    piped ? "-T" : "-tt",
    // A web terminal must pass "~." through to the shell, not treat it as an ssh escape.
    "-e", "none",
    "-F", "/dev/null",
    "-i", i.keyFile,
    // Configured options first: for ssh the first value wins, and the ones that matter for safety are not configurable.
    ...i.extraOptions.flatMap((kv) => o(kv)),
    ...o("IdentitiesOnly=yes"),
    ...o("IdentityAgent=none"),
    ...o("BatchMode=yes"),
    ...o("PreferredAuthentications=publickey"),
    ...o("PasswordAuthentication=no"),
    ...o("KbdInteractiveAuthentication=no"),
    ...o("ForwardAgent=no"),
    ...o("ForwardX11=no"),
    ...o("ClearAllForwardings=yes"),
    ...o("ControlMaster=no"),
    ...o("ControlPath=none"),
    ...o("UpdateHostKeys=no"),
    ...o("GlobalKnownHostsFile=/dev/null"),
    ...o(`HostKeyAlias=${instanceId}`),
    ...hostKeys,
    ...o(`ConnectTimeout=${Math.max(1, Math.floor(i.connectTimeoutSec))}`),
    ...o("ConnectionAttempts=1"),
    ...o(`ServerAliveInterval=${Math.max(1, Math.floor(i.keepaliveSec))}`),
    ...o(`ServerAliveCountMax=${Math.max(1, Math.floor(i.keepaliveCount))}`),
    ...o("LogLevel=ERROR"),
    ...o(`ProxyCommand=${proxy}`),
    "-l", osUser,
    instanceId,
    "docker", "exec", piped ? "-i" : "-it", container,
    ...(i.command ? i.command.map(shellQuote) : ["/bin/bash"]),
  ];
}

/** An OpenSSH known_hosts line pinning `key` ("type base64") to the instance id (HostKeyAlias). */
export function knownHostsLine(instanceId: string, key: string): string {
  check(INSTANCE_ID_RE, instanceId, "instance id");
  const [type, b64] = key.split(" ");
  if (!type || !b64 || !/^[a-z0-9-]+$/.test(type) || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new Error("invalid host key");
  return `${instanceId} ${type} ${b64}\n`;
}

const doc = `see ${INFRA_DOC}#troubleshooting`;
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;?]*[A-Za-z]|\u001b\][^\u0007]*\u0007/g;

/**
 * Explains an ssh exit 255 whose output shows that the connection never came up
 * (EIC endpoint, IAM, aws-cli, security group) as `eic_wiring_incomplete` with
 * what is missing. Anything else (the remote shell's own exit, a dropped
 * connection after a long session) stays a plain exit.
 */
export function diagnoseSshExit(
  exit: { code: number; signal: number | null; tail: Buffer; ranMs: number },
  c: { instanceId: string; osUser: string; connectTimeoutSec: number; tunnelMaxSec?: number },
): TerminalDiagnosis | null {
  if (exit.code !== 255) return null;
  const text = exit.tail.toString("utf8").replace(ANSI, "").replace(/\r/g, "");
  const maxSec = Math.min(3600, Math.max(1, Math.floor(c.tunnelMaxSec ?? 3600)));
  // AWS ends every tunnel at maxTunnelDuration (at most 1 hour); the SSH connection inside cannot move to a new one.
  if (/molecule-eic\[max_duration\]/.test(text) || exit.ranMs >= maxSec * 1000 - 500) {
    return {
      reason: "session_expired",
      message: `the EC2 Instance Connect tunnel reached its maximum duration of ${maxSec} s (AWS closes every tunnel after at most 1 hour) and the shell ended with it; open the Terminal again for a new shell in the workspace container`,
    };
  }
  const wiring = (what: string): TerminalDiagnosis => ({ reason: "eic_wiring_incomplete", message: `EIC wiring incomplete: ${what}; ${doc}` });
  const limit = (what: string): TerminalDiagnosis => ({
    reason: "no_capacity",
    message: `the EC2 Instance Connect Endpoint of ${c.instanceId}'s VPC has all of its 20 concurrent connections in use (AWS's limit per endpoint; ${what}). Close another Terminal into this VPC or try again in a moment; ${doc}#limits`,
  });
  // Native mode: eic-proxy.mjs says what went wrong in one tagged line.
  const tagged = /molecule-eic\[([a-z_]+)\]: ([^\n]*)/.exec(text);
  if (tagged) {
    const [, kind, what] = tagged as unknown as [string, string, string];
    switch (kind) {
      case "limit":
        return limit(what.trim());
      case "denied":
        return wiring(`the terminal worker's IAM identity may not call ec2-instance-connect:OpenTunnel (${what.trim().slice(0, 300)}). Allow it with the aws:ResourceTag/Role=workspace condition`);
      case "credentials":
        return wiring(`OpenTunnel refused the worker's signed request: its AWS credentials are not valid, expired, or the worker's clock is off (${what.trim().slice(0, 300)})`);
      case "unknown_endpoint":
        return wiring(`the EC2 Instance Connect Endpoint is gone (${what.trim().slice(0, 300)}); recreate it in the workspace VPC`);
      case "unavailable":
        // AWS-side (5xx): the session fails as an internal error the user can retry, not a wiring problem.
        return null;
      case "unreachable":
        return wiring(`the tunnel to ${c.instanceId} through the EC2 Instance Connect Endpoint did not come up: ${what.trim().slice(0, 300)}. Check that the workspace security group allows 22/tcp from the endpoint's security group and that sshd runs on the instance`);
    }
    if (exit.ranMs <= (c.connectTimeoutSec + 15) * 1000) return wiring(`the EC2 Instance Connect tunnel to ${c.instanceId} failed: ${what.trim().slice(0, 300)}`);
    return null;
  }
  if (/ConnectionLimitExceeded|status 429|Too Many Requests/i.test(text)) {
    return limit(firstLine(text, /[^\n]*(ConnectionLimitExceeded|429|Too Many)[^\n]*/i));
  }
  if (/no available instance connect endpoints/i.test(text)) {
    return wiring(`there is no EC2 Instance Connect Endpoint in the VPC of ${c.instanceId}. Create one (one per workspace VPC) and allow 22/tcp from it in the workspace security group`);
  }
  if (/OpenTunnel/.test(text) && /(AccessDenied|not authorized|UnauthorizedOperation)/i.test(text)) {
    return wiring(`the terminal worker's IAM identity may not call ec2-instance-connect:OpenTunnel (${firstLine(text, /not authorized[^\n]*/i)}). Allow it with the aws:ResourceTag/Role=workspace condition`);
  }
  const refusedCall = /when calling the (Describe\w+) operation/.exec(text)?.[1];
  if (refusedCall && /(UnauthorizedOperation|AccessDenied|not authorized)/i.test(text)) {
    return wiring(`the terminal worker's IAM identity may not call ec2:${refusedCall} (aws-cli open-tunnel: ${firstLine(text, /[^\n]*(AccessDenied|not authorized)[^\n]*/i)}); the worker needs ec2:DescribeInstances, ec2:DescribeInstanceConnectEndpoints and ec2-instance-connect:OpenTunnel`);
  }
  if (/(AccessDenied|not authorized to perform)/i.test(text) && /(WEBSOCKET_UPGRADE_FAILURE|open-tunnel|DescribeInstanceConnectEndpoints|DescribeInstances)/i.test(text)) {
    return wiring(`aws-cli was refused while opening the tunnel (${firstLine(text, /[^\n]*(AccessDenied|not authorized)[^\n]*/i)}); the worker needs ec2:DescribeInstances, ec2:DescribeInstanceConnectEndpoints and ec2-instance-connect:OpenTunnel`);
  }
  if (/(InvalidSignatureException|signature we calculated does not match|Signature expired)/i.test(text)) {
    return wiring(`OpenTunnel refused aws-cli's signed request (${firstLine(text, /[^\n]*(InvalidSignatureException|signature we calculated|Signature expired)[^\n]*/i).slice(0, 200)}): the AWS credentials aws-cli found are not valid, or the worker's clock is off`);
  }
  if (/(Unable to locate credentials|InvalidClientTokenId|ExpiredToken|UnrecognizedClient|SignatureDoesNotMatch|AuthFailure)/i.test(text)) {
    return wiring("aws-cli on the terminal worker found no valid AWS credentials for open-tunnel");
  }
  if (/argument operation: .*invalid choice|invalid choice: .*open-tunnel/i.test(text)) {
    return wiring('the aws-cli on the terminal worker has no "ec2-instance-connect open-tunnel"; install aws-cli v2 (2.12 or later)');
  }
  if (/(aws|ssh)[^\n]*: (command )?not found|exec: [^\n]*: not found/i.test(text)) {
    return wiring("aws-cli is not installed on the terminal worker (the ssh ProxyCommand could not start it)");
  }
  if (/Permission denied \(publickey/i.test(text)) {
    return wiring(`the instance refused the key pushed with SendSSHPublicKey: the AMI needs EC2 Instance Connect installed (ec2-instance-connect package) and the OS user "${c.osUser}" must exist`);
  }
  if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/i.test(text)) {
    return null; // A security refusal, shown to the user as ssh printed it: not a wiring problem.
  }
  const early = exit.ranMs <= (c.connectTimeoutSec + 15) * 1000;
  if (early && /(kex_exchange_identification|Connection closed by UNKNOWN|banner exchange|Connection timed out|Connection refused|websocket|ssh_exchange_identification|Could not connect to the endpoint URL)/i.test(text)) {
    return wiring(`the tunnel to ${c.instanceId} through the EC2 Instance Connect Endpoint did not come up (${firstLine(text, /[^\n]*(kex_exchange_identification|closed|timed out|refused|websocket|endpoint)[^\n]*/i)}). Check that the workspace security group allows 22/tcp from the endpoint's security group and that sshd runs on the instance`);
  }
  return null;
}

function firstLine(text: string, re: RegExp): string {
  const m = re.exec(text);
  return (m ? m[0] : text.trim().split("\n").pop() ?? "").trim().slice(0, 240);
}
