/**
 * Everything an AWS test needs, local: the fake EC2 / EIC cloud, an sshd per booted
 * instance, the fake aws-cli first on the worker's PATH, and provider settings
 * pointing at them (as options for an in-process worker or as env for a worker process).
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseInstanceTypes, type AwsProviderOptions } from "../../apps/terminal-worker/src/providers/aws/config.ts";
import { FAKE_KEY_ID, FAKE_SECRET, FakeCloud, type FakeInstance } from "./fake-cloud.ts";
import { SshdHarness } from "./sshd-harness.ts";

export const FAKE_AWS_BIN = fileURLToPath(new URL("./bin", import.meta.url));
export const FAKE_AWS_V1_BIN = fileURLToPath(new URL("./bin-v1", import.meta.url));
export const ORG_ID = "org-molecule-test";
export const SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

export interface AwsHarness {
  cloud: FakeCloud;
  sshd: SshdHarness;
  dir: string;
  keyDir: string;
  tunnel: "native" | "aws-cli";
  /** Provider options for an in-process worker (override per test). */
  options(extra?: Partial<AwsProviderOptions>): AwsProviderOptions;
  /** The same settings as worker environment variables. */
  env(extra?: Record<string, string>): Record<string, string>;
  /** Session key directories currently on disk. */
  sessionKeyDirs(): string[];
  /** Remote shells started by the fake docker on an instance (pids). */
  execPids(i: FakeInstance): number[];
  close(): Promise<void>;
}

/** The tunnel mode the AWS tests run in: MOLECULE_TEST_AWS_TUNNEL (aws-terminal-aws-cli.test.ts sets aws-cli), native by default. */
export function testTunnelMode(): "native" | "aws-cli" {
  return process.env.MOLECULE_TEST_AWS_TUNNEL === "aws-cli" ? "aws-cli" : "native";
}

export async function startAwsHarness(o: { sshd?: boolean; bootDelayMs?: number; tunnel?: "native" | "aws-cli" } = {}): Promise<AwsHarness> {
  const tunnel = o.tunnel ?? testTunnelMode();
  // sshd checks that the AuthorizedKeysCommand and every directory above it are root-owned
  // and not group/world-writable, which rules out /tmp — and a checkout that lives under /tmp.
  // /run is root's and 0755 wherever these tests can run sshd at all.
  const parent = "/run/molecule-aws-test";
  mkdirSync(parent, { recursive: true, mode: 0o755 });
  chmodSync(parent, 0o755);
  const dir = mkdtempSync(join(parent, "aws-test-"));
  chmodSync(dir, 0o755);
  mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const keyDir = join(dir, "worker-keys");
  let sshd: SshdHarness;
  const cloud = new FakeCloud({
    dir,
    bootDelayMs: o.bootDelayMs ?? 100,
    onBoot: (i) => (o.sshd === false ? Promise.resolve(null) : sshd.start(i)),
    onTerminate: (i) => sshd.stop(i.id),
  });
  sshd = new SshdHarness(() => cloud.eicEndpointPort);
  await cloud.start();
  // The in-process SDK takes credentials from its default chain: the environment.
  process.env.AWS_ACCESS_KEY_ID = FAKE_KEY_ID;
  process.env.AWS_SECRET_ACCESS_KEY = FAKE_SECRET;
  delete process.env.AWS_PROFILE;
  process.env.AWS_EC2_METADATA_DISABLED = "true";
  const [ami] = cloud.amis;
  const [subnet] = cloud.subnets.keys();
  const [sg] = cloud.securityGroups;
  const childEnv = {
    // Native mode runs with no `aws` executable on PATH at all.
    PATH: tunnel === "aws-cli" ? `${FAKE_AWS_BIN}:${SYSTEM_PATH}` : SYSTEM_PATH,
    HOME: process.env.HOME ?? "/root",
    AWS_ACCESS_KEY_ID: FAKE_KEY_ID,
    AWS_SECRET_ACCESS_KEY: FAKE_SECRET,
  };
  return {
    cloud,
    sshd,
    dir,
    keyDir,
    tunnel,
    options: (extra = {}) => ({
      orgId: ORG_ID,
      region: cloud.region,
      amiId: ami!,
      subnetId: subnet!,
      securityGroupId: sg!,
      instanceTypes: parseInstanceTypes("1=t3.small,2=t3.medium,3=m5.large,4=m5.xlarge"),
      runtimeImage: "registry.example/molecule/workspace-{runtime}:1",
      osUser: "root",
      sshOptions: [],
      keepaliveSec: 5,
      keepaliveCount: 3,
      connectTimeoutSec: 5,
      tunnelMaxSec: 3600,
      tunnel,
      ec2Endpoint: cloud.ec2Url,
      eicEndpoint: cloud.eicUrl,
      keyDir,
      awsCli: "aws",
      sshBin: "ssh",
      childEnv,
      readyTimeoutMs: 15_000,
      pollMs: 100,
      sdkMaxAttempts: 2,
      ...extra,
    }),
    env: (extra = {}) => ({
      ...childEnv,
      MOLECULE_ORG_ID: ORG_ID,
      MOLECULE_AWS_REGION: cloud.region,
      MOLECULE_AWS_AMI_ID: ami!,
      MOLECULE_AWS_SUBNET_ID: subnet!,
      MOLECULE_AWS_SECURITY_GROUP_ID: sg!,
      MOLECULE_AWS_RUNTIME_IMAGE: "registry.example/molecule/workspace-{runtime}:1",
      MOLECULE_AWS_OS_USER: "root",
      MOLECULE_AWS_EC2_ENDPOINT: cloud.ec2Url,
      MOLECULE_AWS_EIC_ENDPOINT: cloud.eicUrl,
      MOLECULE_AWS_KEY_DIR: keyDir,
      MOLECULE_AWS_POLL_MS: "100",
      MOLECULE_AWS_READY_TIMEOUT_MS: "15000",
      MOLECULE_AWS_SSH_CONNECT_TIMEOUT_SEC: "5",
      MOLECULE_AWS_TUNNEL: tunnel,
      AWS_EC2_METADATA_DISABLED: "true",
      ...extra,
    }),
    sessionKeyDirs: () => {
      try {
        return readdirSync(keyDir).filter((e) => e.startsWith("s-"));
      } catch {
        return [];
      }
    },
    execPids: (i) => {
      try {
        return readFileSync(join(i.dir, "docker", "exec-pids"), "utf8").split("\n").filter(Boolean).map(Number);
      } catch {
        return [];
      }
    },
    async close() {
      await sshd.stopAll();
      await cloud.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
