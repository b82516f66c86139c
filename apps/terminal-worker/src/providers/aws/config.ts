import { z } from "zod";
import type { Logger, ProviderName } from "@molecule/shared";

/** Formats of the AWS settings: checked at startup, and again wherever a value reaches a script or argv. */
export const REGION_RE = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;
export const AMI_ID_RE = /^ami-[0-9a-f]{8,17}$/;
export const SUBNET_ID_RE = /^subnet-[0-9a-f]{8,17}$/;
export const SECURITY_GROUP_ID_RE = /^sg-[0-9a-f]{8,17}$/;
/** Tag-safe identifier of the tenant org in the control plane. */
export const ORG_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
/** A container image reference; `{runtime}` is replaced by the workspace runtime. No shell metacharacters. */
export const IMAGE_RE = /^[a-z0-9][a-z0-9._/:@{}-]{0,254}$/;
export const INSTANCE_TYPE_RE = /^[a-z][a-z0-9-]*\.[a-z0-9]+$/;
export { EXECUTABLE_RE } from "../executables.ts";
export const INSTANCE_PROFILE_RE = /^(arn:aws[a-z-]*:iam::\d{12}:instance-profile\/[\w+=,.@/-]{1,128}|[\w+=,.@-]{1,128})$/;

/**
 * Instance families that are not built on the Nitro system. EC2 Instance Connect
 * Endpoint and GetConsoleOutput(Latest) need Nitro, so these are refused at startup.
 */
const XEN_FAMILIES = new Set(["t1", "t2", "m1", "m2", "m3", "m4", "c1", "c3", "c4", "r3", "r4", "i2", "i3", "d2", "g2", "g3", "g3s", "p2", "p3", "x1", "x1e", "h1", "f1", "cc2", "cr1", "hs1"]);

export function isNitroInstanceType(t: string): boolean {
  if (!INSTANCE_TYPE_RE.test(t)) return false;
  const family = t.split(".")[0]!;
  return !XEN_FAMILIES.has(family);
}

export const DEFAULT_INSTANCE_TYPES = "1=t3.small,2=t3.medium,3=m5.large,4=m5.xlarge";

/** Parses `1=t3.small,2=t3.medium,...` (tier=instance type); throws a readable error. */
export function parseInstanceTypes(spec: string): Record<number, string> {
  const out: Record<number, string> = {};
  for (const part of spec.split(",").map((s) => s.trim()).filter(Boolean)) {
    const m = /^([1-9]\d?)\s*=\s*(\S+)$/.exec(part);
    if (!m) throw new Error(`"${part}" is not tier=instance-type (e.g. 2=t3.medium)`);
    const type = m[2]!;
    if (!INSTANCE_TYPE_RE.test(type)) throw new Error(`"${type}" is not an EC2 instance type`);
    if (!isNitroInstanceType(type)) throw new Error(`${type} is not a Nitro instance type; EC2 Instance Connect Endpoint needs Nitro (T3, M5, C5, ...)`);
    out[Number(m[1])] = type;
  }
  for (const tier of [1, 2, 3, 4]) if (!out[tier]) throw new Error(`no instance type for tier ${tier}`);
  return out;
}

/** ssh options that run commands or reroute the connection: never configurable. */
const FORBIDDEN_SSH_OPTIONS = new Set(
  ["ProxyCommand", "ProxyJump", "ProxyUseFdpass", "LocalCommand", "PermitLocalCommand", "KnownHostsCommand", "RemoteCommand", "Include", "Match", "Host", "HostName", "Port", "User", "IdentityFile", "IdentityAgent", "IdentitiesOnly", "CertificateFile", "PKCS11Provider", "SecurityKeyProvider", "ControlMaster", "ControlPath", "ForwardAgent", "RequestTTY", "EscapeChar", "UserKnownHostsFile", "GlobalKnownHostsFile", "StrictHostKeyChecking", "HostKeyAlias", "HostKeyAlgorithms", "BatchMode", "LogLevel", "PreferredAuthentications", "PasswordAuthentication", "KbdInteractiveAuthentication", "SetEnv", "SendEnv", "LocalForward", "RemoteForward", "DynamicForward", "Tunnel", "TunnelDevice"].map((s) => s.toLowerCase()),
);

/** Parses `Key=Value Key=Value` (space-separated, values may hold commas) into ssh `-o` values. */
export function parseSshOptions(spec: string): string[] {
  const out: string[] = [];
  for (const part of spec.split(/\s+/).filter(Boolean)) {
    const m = /^([A-Za-z][A-Za-z0-9]{1,40})=([A-Za-z0-9_.,:@+/-]{1,200})$/.exec(part);
    if (!m) throw new Error(`"${part}" is not Key=Value with a plain value`);
    if (FORBIDDEN_SSH_OPTIONS.has(m[1]!.toLowerCase())) throw new Error(`ssh option ${m[1]} is set by the aws provider and cannot be configured`);
    out.push(`${m[1]}=${m[2]}`);
  }
  return out;
}

export interface AwsProviderOptions {
  /** Tenant org in the control plane; tagged on every instance as MoleculeOrgId. */
  orgId: string;
  region: string;
  amiId: string;
  subnetId: string;
  securityGroupId: string;
  /** Tier -> Nitro instance type. */
  instanceTypes: Record<number, string>;
  /** IAM instance profile for the workspace instances (e.g. to pull the image from ECR). */
  instanceProfile?: string;
  /** Workspace runtime image; `{runtime}` is replaced by the workspace's runtime. */
  runtimeImage: string;
  /** OS user ssh logs in as on the instance. */
  osUser: string;
  /** Extra ssh `-o` options (already validated). */
  sshOptions: string[];
  keepaliveSec: number;
  keepaliveCount: number;
  connectTimeoutSec: number;
  /** The tunnel's maximum duration, maxTunnelDuration (AWS allows at most 3600 s). */
  tunnelMaxSec: number;
  /** native: our tunnel (no aws-cli); aws-cli: `aws ec2-instance-connect open-tunnel` as ssh's ProxyCommand. */
  tunnel?: "native" | "aws-cli";
  /** Native mode's ProxyCommand relay: socat when installed (auto), or always plain node (tests, bench). */
  relay?: "auto" | "node";
  /** Endpoint overrides (tests point these at local fakes); also handed to aws-cli. */
  ec2Endpoint?: string;
  eicEndpoint?: string;
  /** Parent of the per-session 0700 key directories. */
  keyDir: string;
  awsCli: string;
  sshBin: string;
  /** Environment for ssh and aws-cli: PATH, HOME, AWS_* credentials settings (never the worker's whole env). */
  childEnv: Record<string, string>;
  /** How long provisioning waits for the instance and its container. */
  readyTimeoutMs: number;
  pollMs: number;
  /** AWS SDK attempts per call (its own backoff); the provisioning queue retries on top. */
  sdkMaxAttempts?: number;
  log?: Logger;
}

export const DEFAULT_RUNTIME_IMAGE = "public.ecr.aws/molecule-ai/workspace-{runtime}:latest";

/** Adapts a throwing parser to a zod transform (its message becomes the config error). */
export function zodParse<T>(fn: (s: string) => T) {
  return (v: string, ctx: z.RefinementCtx): T => {
    try {
      return fn(v);
    } catch (err) {
      ctx.addIssue({ code: "custom", message: (err as Error).message });
      return z.NEVER;
    }
  };
}

/** The worker settings the aws provider reads (apps/terminal-worker/src/env.ts). */
export interface AwsEnv {
  MOLECULE_PROVIDER: ProviderName;
  MOLECULE_ORG_ID?: string;
  MOLECULE_AWS_REGION?: string;
  AWS_REGION?: string;
  AWS_DEFAULT_REGION?: string;
  MOLECULE_AWS_AMI_ID?: string;
  MOLECULE_AWS_SUBNET_ID?: string;
  MOLECULE_AWS_SECURITY_GROUP_ID?: string;
  MOLECULE_AWS_INSTANCE_TYPES: Record<number, string>;
  MOLECULE_AWS_INSTANCE_PROFILE?: string;
  MOLECULE_AWS_RUNTIME_IMAGE: string;
  MOLECULE_AWS_OS_USER: string;
  MOLECULE_AWS_SSH_OPTIONS: string[];
  MOLECULE_AWS_SSH_KEEPALIVE_SEC: number;
  MOLECULE_AWS_SSH_KEEPALIVE_COUNT: number;
  MOLECULE_AWS_SSH_CONNECT_TIMEOUT_SEC: number;
  MOLECULE_AWS_TUNNEL_MAX_SEC: number;
  MOLECULE_AWS_TUNNEL?: "native" | "aws-cli";
  MOLECULE_AWS_EC2_ENDPOINT?: string;
  MOLECULE_AWS_EIC_ENDPOINT?: string;
  MOLECULE_AWS_KEY_DIR: string;
  MOLECULE_AWS_CLI: string;
  MOLECULE_SSH_BIN: string;
  MOLECULE_AWS_READY_TIMEOUT_MS: number;
  MOLECULE_AWS_POLL_MS: number;
}

/**
 * The controlplane backend is on when MOLECULE_ORG_ID and the workspace AMI are set
 * (or MOLECULE_PROVIDER=aws). Then every other required setting must be there too:
 * a half-configured backend stops the worker at startup with the list of what is missing.
 */
export function awsOptionsFromEnv(env: AwsEnv, childEnv: Record<string, string>, log?: Logger): AwsProviderOptions | null {
  const on = (Boolean(env.MOLECULE_ORG_ID) && Boolean(env.MOLECULE_AWS_AMI_ID)) || env.MOLECULE_PROVIDER === "aws";
  if (!on) return null;
  const region = env.MOLECULE_AWS_REGION ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  const missing = [
    !env.MOLECULE_ORG_ID && "MOLECULE_ORG_ID",
    !region && "MOLECULE_AWS_REGION (or AWS_REGION)",
    !env.MOLECULE_AWS_AMI_ID && "MOLECULE_AWS_AMI_ID",
    !env.MOLECULE_AWS_SUBNET_ID && "MOLECULE_AWS_SUBNET_ID",
    !env.MOLECULE_AWS_SECURITY_GROUP_ID && "MOLECULE_AWS_SECURITY_GROUP_ID",
  ].filter(Boolean);
  if (missing.length) throw new Error(`invalid configuration: the aws provider (controlplane backend) also needs ${missing.join(", ")}`);
  if (!REGION_RE.test(region!)) throw new Error(`invalid configuration: ${JSON.stringify(region)} is not an AWS region (MOLECULE_AWS_REGION / AWS_REGION)`);
  return {
    orgId: env.MOLECULE_ORG_ID!,
    region: region!,
    amiId: env.MOLECULE_AWS_AMI_ID!,
    subnetId: env.MOLECULE_AWS_SUBNET_ID!,
    securityGroupId: env.MOLECULE_AWS_SECURITY_GROUP_ID!,
    instanceTypes: env.MOLECULE_AWS_INSTANCE_TYPES,
    instanceProfile: env.MOLECULE_AWS_INSTANCE_PROFILE,
    runtimeImage: env.MOLECULE_AWS_RUNTIME_IMAGE,
    osUser: env.MOLECULE_AWS_OS_USER,
    sshOptions: env.MOLECULE_AWS_SSH_OPTIONS,
    keepaliveSec: env.MOLECULE_AWS_SSH_KEEPALIVE_SEC,
    keepaliveCount: env.MOLECULE_AWS_SSH_KEEPALIVE_COUNT,
    connectTimeoutSec: env.MOLECULE_AWS_SSH_CONNECT_TIMEOUT_SEC,
    tunnelMaxSec: env.MOLECULE_AWS_TUNNEL_MAX_SEC,
    tunnel: env.MOLECULE_AWS_TUNNEL ?? "native",
    ec2Endpoint: env.MOLECULE_AWS_EC2_ENDPOINT,
    eicEndpoint: env.MOLECULE_AWS_EIC_ENDPOINT,
    keyDir: env.MOLECULE_AWS_KEY_DIR,
    awsCli: env.MOLECULE_AWS_CLI,
    sshBin: env.MOLECULE_SSH_BIN,
    childEnv,
    readyTimeoutMs: env.MOLECULE_AWS_READY_TIMEOUT_MS,
    pollMs: env.MOLECULE_AWS_POLL_MS,
    log,
  };
}
