import { describe, expect, it } from "vitest";
import { ProviderError } from "../types.ts";
import { loadWorkerEnv } from "../../env.ts";
import { awsOptionsFromEnv, isNitroInstanceType, parseInstanceTypes, parseSshOptions } from "./config.ts";
import { ec2ProviderError } from "./errors.ts";
import { awsCliSupportsOpenTunnel } from "./tools.ts";

const full = {
  MOLECULE_ORG_ID: "org-42",
  MOLECULE_AWS_REGION: "eu-west-1",
  MOLECULE_AWS_AMI_ID: "ami-0123456789abcdef0",
  MOLECULE_AWS_SUBNET_ID: "subnet-0123456789abcdef0",
  MOLECULE_AWS_SECURITY_GROUP_ID: "sg-0123456789abcdef0",
};

describe("aws settings", () => {
  it("are off without MOLECULE_ORG_ID and the AMI, on with everything", () => {
    expect(awsOptionsFromEnv(loadWorkerEnv({}), {})).toBeNull();
    expect(awsOptionsFromEnv(loadWorkerEnv({ MOLECULE_ORG_ID: "org-42" }), {})).toBeNull();
    const o = awsOptionsFromEnv(loadWorkerEnv(full), { PATH: "/usr/bin" });
    expect(o).toMatchObject({ orgId: "org-42", region: "eu-west-1", osUser: "ec2-user", instanceTypes: { 1: "t3.small", 2: "t3.medium" }, tunnelMaxSec: 3600 });
  });

  it("the tunnel is native unless MOLECULE_AWS_TUNNEL=aws-cli; anything else stops the worker", () => {
    expect(awsOptionsFromEnv(loadWorkerEnv(full), {})?.tunnel).toBe("native");
    expect(awsOptionsFromEnv(loadWorkerEnv({ ...full, MOLECULE_AWS_TUNNEL: "aws-cli" }), {})?.tunnel).toBe("aws-cli");
    expect(() => loadWorkerEnv({ ...full, MOLECULE_AWS_TUNNEL: "ssm" })).toThrow(/MOLECULE_AWS_TUNNEL/);
  });

  it("a half-configured backend names what is missing", () => {
    const { MOLECULE_AWS_SUBNET_ID: _s, MOLECULE_AWS_REGION: _r, ...partial } = full;
    expect(() => awsOptionsFromEnv(loadWorkerEnv(partial), {})).toThrow(/MOLECULE_AWS_REGION.*MOLECULE_AWS_SUBNET_ID/);
    expect(awsOptionsFromEnv(loadWorkerEnv({ ...partial, MOLECULE_AWS_SUBNET_ID: full.MOLECULE_AWS_SUBNET_ID, AWS_REGION: "us-west-2" }), {})?.region).toBe("us-west-2");
    expect(() => awsOptionsFromEnv(loadWorkerEnv({ ...full, MOLECULE_AWS_REGION: undefined, AWS_REGION: "us-west-2;id" }), {})).toThrow(/not an AWS region/);
  });

  it("rejects malformed ids, non-Nitro types and dangerous ssh options at startup", () => {
    expect(() => loadWorkerEnv({ ...full, MOLECULE_AWS_AMI_ID: "ami-xyz" })).toThrow(/MOLECULE_AWS_AMI_ID/);
    expect(() => loadWorkerEnv({ ...full, MOLECULE_AWS_OS_USER: "ec2 user" })).toThrow(/MOLECULE_AWS_OS_USER/);
    expect(() => loadWorkerEnv({ ...full, MOLECULE_AWS_INSTANCE_TYPES: "1=t2.micro,2=t3.medium,3=m5.large,4=m5.xlarge" })).toThrow(/not a Nitro/);
    expect(() => loadWorkerEnv({ ...full, MOLECULE_AWS_SSH_OPTIONS: "ProxyCommand=nc" })).toThrow(/cannot be configured/);
    expect(() => loadWorkerEnv({ ...full, MOLECULE_AWS_CLI: "aws;id" })).toThrow(/MOLECULE_AWS_CLI/);
  });

  it("parses the tier map and ssh options", () => {
    expect(parseInstanceTypes("1=t3a.small, 2=m6i.large,3=c7g.xlarge,4=r6i.2xlarge")).toEqual({ 1: "t3a.small", 2: "m6i.large", 3: "c7g.xlarge", 4: "r6i.2xlarge" });
    expect(() => parseInstanceTypes("1=t3.small")).toThrow(/tier 2/);
    expect(isNitroInstanceType("m4.large")).toBe(false);
    expect(isNitroInstanceType("t3.nano")).toBe(true);
    expect(parseSshOptions("Ciphers=aes256-gcm@openssh.com,chacha20-poly1305@openssh.com Compression=no")).toEqual([
      "Ciphers=aes256-gcm@openssh.com,chacha20-poly1305@openssh.com",
      "Compression=no",
    ]);
    expect(() => parseSshOptions("LocalCommand=id")).toThrow();
    expect(() => parseSshOptions("Ciphers=$(id)")).toThrow();
  });

  it("knows which aws-cli has open-tunnel", () => {
    expect(awsCliSupportsOpenTunnel("aws-cli/1.45.11 Python/3.11.7 Linux/6 botocore/1.43.11").ok).toBe(false);
    expect(awsCliSupportsOpenTunnel("aws-cli/2.11.9 Python/3.11.2").ok).toBe(false);
    expect(awsCliSupportsOpenTunnel("aws-cli/2.27.4 Python/3.13.2 Linux/6 exe/x86_64").ok).toBe(true);
  });
});

describe("EC2 errors", () => {
  const map = (name: string, message = "msg") => ec2ProviderError(Object.assign(new Error(message), { name }), { op: "RunInstances", region: "eu-west-1", amiId: "ami-0123456789abcdef0", instanceType: "t3.medium", subnetId: "subnet-0123456789abcdef0" });
  it("throttling and AWS-side trouble are transient, with the code kept", () => {
    for (const code of ["RequestLimitExceeded", "InternalError", "ServiceUnavailable"]) expect(map(code).transient).toBe(true);
    expect(map("RequestLimitExceeded").message).toMatch(/throttling.*RequestLimitExceeded/);
    expect(ec2ProviderError(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }), { op: "DescribeInstances", region: "x" }).transient).toBe(true);
  });
  it("credentials, quota, capacity and AMI problems are permanent and say what to do", () => {
    const cases: [string, RegExp][] = [
      ["AuthFailure", /credentials.*default chain/],
      ["UnauthorizedOperation", /may not call ec2:RunInstances.*#iam-policy/],
      ["VcpuLimitExceeded", /quota.*t3\.medium.*Service Quotas/],
      ["InsufficientInstanceCapacity", /no capacity for t3\.medium.*another subnet/],
      ["InvalidAMIID.NotFound", /AMI ami-0123456789abcdef0 does not exist.*MOLECULE_AWS_AMI_ID/],
    ];
    for (const [code, re] of cases) {
      const e = map(code);
      expect(e).toBeInstanceOf(ProviderError);
      expect(e.transient, code).toBe(false);
      expect(e.message).toMatch(re);
    }
    expect(map("CredentialsProviderError", "Could not load credentials from any providers").message).toMatch(/credentials/);
  });
});
