import { createHash, createHmac, type Hash, type Hmac } from "node:crypto";
import { SignatureV4 } from "@smithy/signature-v4";

/** SigV4's hash: node's own sha256 (HMAC when a key is given), so no extra crypto package. */
export class NodeSha256 {
  private readonly hash: Hash | Hmac;
  constructor(secret?: string | Uint8Array | ArrayBuffer | ArrayBufferView) {
    this.hash = secret === undefined ? createHash("sha256") : createHmac("sha256", toBuf(secret));
  }
  update(data: string | Uint8Array | ArrayBuffer | ArrayBufferView): void {
    this.hash.update(toBuf(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
}

function toBuf(v: string | Uint8Array | ArrayBuffer | ArrayBufferView): Buffer {
  if (typeof v === "string") return Buffer.from(v, "utf8");
  if (v instanceof ArrayBuffer) return Buffer.from(v);
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export const EIC_SERVICE = "ec2-instance-connect";
/** aws-cli presigns open-tunnel URLs for 60 s: the WebSocket must be opened right away. */
export const PRESIGN_EXPIRY_SEC = 60;

export interface OpenTunnelTarget {
  /** The endpoint's DnsName (or FipsDnsName), optionally host:port (local fakes). */
  dnsName: string;
  endpointId: string;
  privateIp: string;
  remotePort: number;
  /** 1..3600; omitted: AWS's own maximum (3600 s). */
  maxTunnelSec?: number;
}

const DNS_RE = /^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$/;
const EICE_RE = /^eice-[0-9a-f]{8,17}$/;
const IPV4_RE = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

/**
 * The presigned `wss://<dns>/openTunnel?...` URL as aws-cli v2 builds it: SigV4
 * query presigning for ec2-instance-connect in the endpoint's region, 60 s, only
 * `host` signed, empty-payload hash; a session token goes into the query before
 * signing. `scheme` is "ws" only for local fakes.
 */
export async function presignOpenTunnel(
  t: OpenTunnelTarget,
  c: { region: string; credentials: AwsCredentials; now?: Date; scheme?: "wss" | "ws" },
): Promise<string> {
  if (!DNS_RE.test(t.dnsName)) throw new Error(`invalid endpoint DNS name ${JSON.stringify(t.dnsName)}`);
  if (!EICE_RE.test(t.endpointId)) throw new Error(`invalid endpoint id ${JSON.stringify(t.endpointId)}`);
  if (!IPV4_RE.test(t.privateIp)) throw new Error(`invalid private IP ${JSON.stringify(t.privateIp)}`);
  const [hostname, port] = t.dnsName.split(":");
  const query: Record<string, string> = {
    instanceConnectEndpointId: t.endpointId,
    remotePort: String(t.remotePort),
    privateIpAddress: t.privateIp,
  };
  if (t.maxTunnelSec !== undefined) query.maxTunnelDuration = String(Math.min(3600, Math.max(1, Math.floor(t.maxTunnelSec))));
  const signer = new SignatureV4({ service: EIC_SERVICE, region: c.region, credentials: c.credentials, sha256: NodeSha256 });
  const signed = await signer.presign(
    { method: "GET", protocol: "https:", hostname: hostname!, ...(port ? { port: Number(port) } : {}), path: "/openTunnel", query, headers: { host: t.dnsName } },
    { expiresIn: PRESIGN_EXPIRY_SEC, ...(c.now ? { signingDate: c.now } : {}) },
  );
  const qs = Object.entries(signed.query ?? {})
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join("&");
  return `${c.scheme ?? "wss"}://${t.dnsName}/openTunnel?${qs}`;
}
