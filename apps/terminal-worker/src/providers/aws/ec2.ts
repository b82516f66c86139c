import { createHash } from "node:crypto";
import {
  CreateTagsCommand,
  DescribeInstanceConnectEndpointsCommand,
  DescribeInstancesCommand,
  EC2Client,
  GetConsoleOutputCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  type Instance,
} from "@aws-sdk/client-ec2";
import { INSTANCE_ID_RE } from "@molecule/shared";
import { ProviderError } from "../types.ts";
import type { AwsProviderOptions } from "./config.ts";
import { awsCode, ec2ProviderError } from "./errors.ts";

export const TAG_ROLE = "Role";
export const ROLE_WORKSPACE = "workspace";
export const TAG_ORG = "MoleculeOrgId";
export const TAG_WORKSPACE = "MoleculeWorkspaceId";
/** Which provisioning request launched the instance: a retried request adopts it instead of launching again. */
export const TAG_REQUEST = "MoleculeRequest";
/** The instance's SSH host key, read from its console during provisioning; the Terminal pins it. */
export const TAG_HOST_KEY = "MoleculeHostKey";

export interface InstanceInfo {
  id: string;
  state: string;
  stateReason: string | null;
  tags: Record<string, string>;
  launchTime: Date | null;
  vpcId: string | null;
  subnetId: string | null;
  privateIp: string | null;
}

/** An EC2 Instance Connect Endpoint as DescribeInstanceConnectEndpoints lists it. */
export interface EndpointInfo {
  id: string;
  state: string;
  subnetId: string | null;
  dnsName: string | null;
  fipsDnsName: string | null;
}

/** Endpoint states aws-cli accepts for open-tunnel. */
export const USABLE_ENDPOINT_STATES = ["create-complete", "update-in-progress", "update-failed", "update-complete"];

const ALIVE = ["pending", "running", "stopping", "stopped"];

function info(i: Instance): InstanceInfo {
  const tags: Record<string, string> = {};
  for (const t of i.Tags ?? []) if (t.Key) tags[t.Key] = t.Value ?? "";
  return {
    id: i.InstanceId ?? "",
    state: i.State?.Name ?? "unknown",
    stateReason: i.StateReason?.Message ?? null,
    tags,
    launchTime: i.LaunchTime ?? null,
    vpcId: i.VpcId ?? null,
    subnetId: i.SubnetId ?? null,
    privateIp: i.PrivateIpAddress ?? null,
  };
}

export interface LaunchSpec {
  workspaceId: string;
  name: string;
  tier: number;
  requestTag: string;
  userData: string;
}

/** The EC2 calls the provider makes, with every error mapped to an actionable ProviderError. */
export function createEc2(o: AwsProviderOptions) {
  const client = new EC2Client({
    region: o.region,
    ...(o.ec2Endpoint ? { endpoint: o.ec2Endpoint } : {}),
    ...(o.sdkMaxAttempts ? { maxAttempts: o.sdkMaxAttempts } : {}),
  });
  const ctx = (op: string, extra: { instanceType?: string } = {}) => ({ op, region: o.region, amiId: o.amiId, subnetId: o.subnetId, ...extra });

  async function describe(filters: { Name: string; Values: string[] }[], ids?: string[]): Promise<InstanceInfo[]> {
    const out: InstanceInfo[] = [];
    let token: string | undefined;
    try {
      do {
        const r = await client.send(new DescribeInstancesCommand({ Filters: filters, InstanceIds: ids, NextToken: token, ...(ids ? {} : { MaxResults: 100 }) }));
        for (const res of r.Reservations ?? []) for (const i of res.Instances ?? []) out.push(info(i));
        token = r.NextToken;
      } while (token);
    } catch (err) {
      if (awsCode(err) === "InvalidInstanceID.NotFound") return [];
      throw ec2ProviderError(err, ctx("DescribeInstances"));
    }
    return out;
  }

  async function terminate(ids: string[]): Promise<void> {
    const valid = ids.filter((id) => INSTANCE_ID_RE.test(id));
    if (valid.length === 0) return;
    try {
      await client.send(new TerminateInstancesCommand({ InstanceIds: valid }));
    } catch (err) {
      // One unknown id fails the whole call: terminate the others one by one.
      if (awsCode(err) === "InvalidInstanceID.NotFound") {
        if (valid.length > 1) for (const id of valid) await terminate([id]);
        return;
      }
      throw ec2ProviderError(err, ctx("TerminateInstances"));
    }
  }

  const ownTags = (workspaceId: string) => [
    { Name: `tag:${TAG_ROLE}`, Values: [ROLE_WORKSPACE] },
    { Name: `tag:${TAG_ORG}`, Values: [o.orgId] },
    { Name: `tag:${TAG_WORKSPACE}`, Values: [workspaceId] },
  ];

  return {
    client,

    /** This workspace's instances that still exist (not shutting down or terminated), found by tag. */
    async findWorkspaceInstances(workspaceId: string): Promise<InstanceInfo[]> {
      return describe([...ownTags(workspaceId), { Name: "instance-state-name", Values: ALIVE }]);
    },

    /** One instance, or null when EC2 does not know it (anymore). */
    async describeInstance(id: string): Promise<InstanceInfo | null> {
      if (!INSTANCE_ID_RE.test(id)) return null;
      const [i] = await describe([], [id]);
      return i ?? null;
    },

    /**
     * RunInstances with a client token derived from the request: if the call is
     * repeated (our retry after a lost response), EC2 returns the same instance.
     */
    async launch(s: LaunchSpec): Promise<InstanceInfo> {
      const instanceType = o.instanceTypes[s.tier];
      if (!instanceType) throw new ProviderError(`no instance type is configured for tier ${s.tier} (MOLECULE_AWS_INSTANCE_TYPES)`, false, "aws_config");
      const tags = [
        { Key: TAG_ROLE, Value: ROLE_WORKSPACE },
        { Key: TAG_ORG, Value: o.orgId },
        { Key: TAG_WORKSPACE, Value: s.workspaceId },
        { Key: TAG_REQUEST, Value: s.requestTag },
        { Key: "Name", Value: s.name.slice(0, 255) },
      ];
      try {
        const r = await client.send(
          new RunInstancesCommand({
            ImageId: o.amiId,
            InstanceType: instanceType as never,
            MinCount: 1,
            MaxCount: 1,
            SubnetId: o.subnetId,
            SecurityGroupIds: [o.securityGroupId],
            UserData: Buffer.from(s.userData).toString("base64"),
            ClientToken: createHash("sha256").update(`molecule:${s.requestTag}`).digest("hex").slice(0, 64),
            MetadataOptions: { HttpTokens: "required", HttpEndpoint: "enabled" },
            ...(o.instanceProfile
              ? { IamInstanceProfile: o.instanceProfile.startsWith("arn:") ? { Arn: o.instanceProfile } : { Name: o.instanceProfile } }
              : {}),
            TagSpecifications: [
              { ResourceType: "instance", Tags: tags },
              { ResourceType: "volume", Tags: tags.filter((t) => t.Key !== TAG_REQUEST) },
            ],
          }),
        );
        const i = r.Instances?.[0];
        if (!i?.InstanceId || !INSTANCE_ID_RE.test(i.InstanceId)) throw Object.assign(new Error("RunInstances returned no instance id"), { name: "InternalError" });
        return info(i);
      } catch (err) {
        throw ec2ProviderError(err, ctx("RunInstances", { instanceType }));
      }
    },

    async consoleOutput(id: string): Promise<string> {
      try {
        const r = await client.send(new GetConsoleOutputCommand({ InstanceId: id, Latest: true }));
        return r.Output ? Buffer.from(r.Output, "base64").toString("utf8") : "";
      } catch (err) {
        throw ec2ProviderError(err, ctx("GetConsoleOutput"));
      }
    },

    async tag(id: string, key: string, value: string): Promise<void> {
      try {
        await client.send(new CreateTagsCommand({ Resources: [id], Tags: [{ Key: key, Value: value }] }));
      } catch (err) {
        throw ec2ProviderError(err, ctx("CreateTags"));
      }
    },

    terminate,

    /** The usable EIC Endpoints of a VPC (aws-cli's eicefetcher: filtered by vpc-id and state). */
    async describeEndpoints(vpcId: string): Promise<EndpointInfo[]> {
      const out: EndpointInfo[] = [];
      let token: string | undefined;
      try {
        do {
          const r = await client.send(
            new DescribeInstanceConnectEndpointsCommand({
              Filters: [
                { Name: "vpc-id", Values: [vpcId] },
                { Name: "state", Values: USABLE_ENDPOINT_STATES },
              ],
              NextToken: token,
            }),
          );
          for (const e of r.InstanceConnectEndpoints ?? []) {
            if (!e.InstanceConnectEndpointId) continue;
            out.push({ id: e.InstanceConnectEndpointId, state: e.State ?? "", subnetId: e.SubnetId ?? null, dnsName: e.DnsName ?? null, fipsDnsName: e.FipsDnsName ?? null });
          }
          token = r.NextToken;
        } while (token);
      } catch (err) {
        throw ec2ProviderError(err, ctx("DescribeInstanceConnectEndpoints"));
      }
      return out;
    },

    destroy(): void {
      client.destroy();
    },
  };
}
export type Ec2 = ReturnType<typeof createEc2>;
