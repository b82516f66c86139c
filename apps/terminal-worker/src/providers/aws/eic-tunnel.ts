import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ProviderError, TerminalUnavailableError } from "../types.ts";
import type { AwsProviderOptions } from "./config.ts";
import type { Ec2, EndpointInfo, InstanceInfo } from "./ec2.ts";
import { INFRA_DOC } from "./errors.ts";
import { bridgeTunnel, type TunnelBridge } from "./eic-bridge.ts";
import { presignOpenTunnel, type AwsCredentials } from "./eic-signer.ts";
import { openTunnel } from "./eic-wire.mjs";

/** ssh's ProxyCommand relay in native mode when socat is missing: plain node and this JavaScript file (no TypeScript loader per open). */
export const EIC_PROXY_SCRIPT = fileURLToPath(new URL("./eic-proxy.mjs", import.meta.url));
/** A path that may stand in ssh's ProxyCommand (a /bin/sh string) as it is. */
export const SAFE_PATH_RE = /^\/[A-Za-z0-9_.+/-]{1,1000}$/;

export interface TunnelTarget {
  endpoint: EndpointInfo;
  dnsName: string;
  privateIp: string;
}

const wiring = (what: string, anchor = "troubleshooting") =>
  new TerminalUnavailableError("eic_wiring_incomplete", `EIC wiring incomplete: ${what}; see ${INFRA_DOC}#${anchor}`);

/** aws-cli's endpoint choice: an endpoint in the instance's subnet first, else any usable one in its VPC. */
export function pickEndpoint(list: EndpointInfo[], subnetId: string | null): EndpointInfo | null {
  return list.find((e) => e.subnetId === subnetId) ?? list[0] ?? null;
}

/**
 * The native tunnel's AWS side, in the worker: endpoint discovery with the SDK
 * (DescribeInstances is done by the caller, DescribeInstanceConnectEndpoints here)
 * and the presigned openTunnel URL, with credentials and region from the SDK's
 * default chain. The bytes then go through eic-proxy.mjs.
 */
export function createTunnelPlanner(o: AwsProviderOptions, ec2: Ec2) {
  const fips = /^true$/i.test(o.childEnv.AWS_USE_FIPS_ENDPOINT ?? "");

  async function target(inst: InstanceInfo): Promise<TunnelTarget> {
    if (!inst.vpcId || !inst.privateIp) {
      throw wiring(`the instance ${inst.id} has no VPC or private IP address in DescribeInstances; EC2 Instance Connect Endpoint reaches instances by private IP`);
    }
    let list: EndpointInfo[];
    try {
      list = await ec2.describeEndpoints(inst.vpcId);
    } catch (err) {
      if (err instanceof ProviderError && err.code === "aws_access_denied") {
        throw wiring(
          `the terminal worker's IAM identity may not call ec2:DescribeInstanceConnectEndpoints (${err.message.split(": ").slice(1).join(": ").slice(0, 240)}). The native tunnel needs ec2:DescribeInstances, ec2:DescribeInstanceConnectEndpoints and ec2-instance-connect:OpenTunnel`,
          "iam-policy",
        );
      }
      if (err instanceof ProviderError && err.code === "aws_credentials") throw wiring(err.message, "credentials");
      throw new Error(err instanceof Error ? err.message : String(err));
    }
    const e = pickEndpoint(list, inst.subnetId);
    if (!e) {
      throw wiring(
        `there is no EC2 Instance Connect Endpoint in the VPC of ${inst.id} (${inst.vpcId}) in a usable state. Create one (one per workspace VPC) and allow 22/tcp from it in the workspace security group`,
      );
    }
    const dnsName = fips ? e.fipsDnsName : e.dnsName;
    if (!dnsName) throw wiring(`the EC2 Instance Connect Endpoint ${e.id} has no ${fips ? "FipsDnsName (AWS_USE_FIPS_ENDPOINT=true)" : "DnsName"}`);
    return { endpoint: e, dnsName, privateIp: inst.privateIp };
  }

  /** Presigns the URL now (it is good for 60 s). */
  async function presign(t: TunnelTarget): Promise<string> {
    let credentials: AwsCredentials;
    try {
      credentials = await ec2.client.config.credentials();
    } catch (err) {
      throw wiring(`the terminal worker found no AWS credentials to sign OpenTunnel (${(err as Error).message})`, "credentials");
    }
    // Only a local fake listens on loopback with a port; AWS's endpoints are wss:// on 443.
    const scheme = /^127\.0\.0\.1:\d+$/.test(t.dnsName) ? "ws" : "wss";
    const url = await presignOpenTunnel(
      { dnsName: t.dnsName, endpointId: t.endpoint.id, privateIp: t.privateIp, remotePort: 22, maxTunnelSec: o.tunnelMaxSec },
      { region: o.region, credentials, scheme },
    );
    return url;
  }

  /**
   * Opens the tunnel in this process and bridges it to a Unix socket in the session's
   * 0700 directory. A refused handshake throws a TunnelError (the caller explains it).
   */
  async function open(t: TunnelTarget, sessionDir: string, instanceId: string): Promise<TunnelBridge> {
    const url = await presign(t);
    const openedAt = performance.now();
    const ws = await openTunnel(url, { timeoutMs: o.connectTimeoutSec * 1000 });
    return bridgeTunnel(ws, join(sessionDir, "t.sock"), { maxTunnelSec: o.tunnelMaxSec, openedAt, target: instanceId, acceptMs: (o.connectTimeoutSec + 10) * 1000 });
  }

  return { target, presign, open };
}
