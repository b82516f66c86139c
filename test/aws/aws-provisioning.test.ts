/**
 * aws workspaces through the real API and provisioning queue, against the fake EC2:
 * what is launched, when the workspace becomes ready, delete, restart, throttling
 * and the errors a user can act on.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAwsProvider, type AwsProvider } from "../../apps/terminal-worker/src/providers/aws/provider.ts";
import { call, waitFor } from "../helpers/http.ts";
import { startStack, type Stack } from "../helpers/stack.ts";
import { openShell } from "../helpers/term-client.ts";
import { FAKE_KEY_ID, type FakeInstance } from "./fake-cloud.ts";
import { ORG_ID, startAwsHarness, type AwsHarness } from "./harness.ts";

let h: AwsHarness;
let s: Stack;
let token: string;
let provider: AwsProvider;

beforeAll(async () => {
  h = await startAwsHarness();
  provider = createAwsProvider(h.options());
  s = await startStack({ api: { provider: "aws" }, providers: { aws: provider } });
  token = (await s.org("prov")).token;
}, 60_000);
afterAll(async () => {
  await s?.close();
  provider?.close();
  await h?.close();
});

async function create(name: string, tier = 2): Promise<string> {
  const r = await call(s.url, "POST", "/workspaces", { token, body: { name, runtime: "hermes", tier } });
  expect(r.status).toBe(201);
  expect(r.body.provider).toBe("aws");
  return r.body.id as string;
}
const get = async (id: string) => (await call(s.url, "GET", `/workspaces/${id}`, { token })).body;
async function settled(id: string, ms = 20_000) {
  return waitFor(async () => {
    const w = await get(id);
    return w.status === "ready" || w.status === "failed" || w.status === "removed" ? w : null;
  }, ms, 50);
}
const instancesOf = (id: string): FakeInstance[] => [...h.cloud.instances.values()].filter((i) => i.tags.MoleculeWorkspaceId === id);
const alive = (i: FakeInstance) => i.state === "pending" || i.state === "running";

describe("aws provisioning", () => {
  it("launches one tagged Nitro instance per workspace, records its id at once, and is ready only when the container answers", async () => {
    h.cloud.holdBoot = true;
    let id: string;
    try {
      id = await create("prod-agent", 3);
      // instance_id is stored while the instance is still pending.
      const pending = await waitFor(async () => {
        const w = await get(id);
        return w.instance_id ? w : null;
      }, 10_000, 20);
      expect(pending.status).toBe("provisioning");
      expect(pending.instance_id).toMatch(/^i-[0-9a-f]{17}$/);
      // The worker has looked at the pending instance a few more times and still waits.
      const looked = h.cloud.callsOf("DescribeInstances").length;
      await waitFor(async () => h.cloud.callsOf("DescribeInstances").length >= looked + 3, 10_000, 20);
      expect((await get(id)).status).toBe("provisioning");
    } finally {
      h.cloud.holdBoot = false;
    }
    const w = await settled(id);
    expect(w.status).toBe("ready");
    const [inst, ...more] = instancesOf(id);
    expect(more).toEqual([]);
    expect(inst!.id).toBe(w.instance_id);
    expect(inst!.tags).toMatchObject({ Role: "workspace", MoleculeOrgId: ORG_ID, MoleculeWorkspaceId: id, Name: "prod-agent" });
    const run = h.cloud.callsOf("RunInstances").find((c) => c.params.UserData && Buffer.from(String(c.params.UserData), "base64").toString().includes(id))!;
    expect(run.params).toMatchObject({
      ImageId: [...h.cloud.amis][0],
      InstanceType: "m5.large",
      SubnetId: [...h.cloud.subnets.keys()][0],
      "SecurityGroupId.1": [...h.cloud.securityGroups][0],
      "MetadataOptions.HttpTokens": "required",
    });
    expect(String(run.params.ClientToken)).toMatch(/^[0-9a-f]{64}$/);
    // The user data really started the runtime container, named after the workspace.
    expect(inst!.userData).toContain(`C='ws-${id.slice(0, 12)}'`);
    expect(inst!.console).toContain(`MOLECULE_READY ws-${id.slice(0, 12)}`);
    expect(inst!.tags.MoleculeHostKey).toBe(inst!.hostKey);
  });

  it("delete terminates the instance", async () => {
    const id = await create("short-lived");
    const w = await settled(id);
    expect(w.status).toBe("ready");
    const del = await call(s.url, "DELETE", `/workspaces/${id}`, { token });
    expect(del.status).toBe(202);
    expect((await settled(id)).status).toBe("removed");
    const inst = h.cloud.instances.get(w.instance_id)!;
    expect(["shutting-down", "terminated"]).toContain(inst.state);
    expect(h.cloud.callsOf("TerminateInstances").some((c) => c.params["InstanceId.1"] === inst.id)).toBe(true);
  });

  it("restart replaces the instance, updates instance_id, and the Terminal opens on the new one", async () => {
    const id = await create("restarted");
    const before = await settled(id);
    expect(before.status).toBe("ready");
    const r = await call(s.url, "POST", `/workspaces/${id}/restart`, { token });
    expect(r.status).toBe(202);
    const after = await waitFor(async () => {
      const w = await get(id);
      return w.status === "ready" && w.instance_id !== before.instance_id ? w : null;
    }, 20_000, 50);
    const old = h.cloud.instances.get(before.instance_id)!;
    expect(["shutting-down", "terminated"]).toContain(old.state);
    expect(instancesOf(id).filter(alive).map((i) => i.id)).toEqual([after.instance_id]);
    expect(h.cloud.instances.get(after.instance_id)!.tags.MoleculeRequest).toMatch(new RegExp(`^${id}-restart-\\d+$`));
    const c = await openShell(s.wsUrl, id, { token });
    expect((await c.run("echo $MOLECULE_WS_ID", 15_000)).trim()).toBe(id);
    const audit = (await call(s.url, "GET", `/workspaces/${id}/terminal/sessions`, { token })).body.sessions[0];
    expect(audit.instance_id).toBe(after.instance_id);
    await c.close();
  });

  it("retries throttling with backoff and launches exactly one instance", async () => {
    const runsBefore = h.cloud.callsOf("RunInstances").length;
    h.cloud.failNext("RunInstances", "RequestLimitExceeded", "Request limit exceeded.", 503, 3);
    const id = await create("throttled");
    const w = await settled(id, 30_000);
    expect(w.status).toBe("ready");
    const runs = h.cloud.callsOf("RunInstances").slice(runsBefore);
    expect(runs.filter((c) => c.error === "RequestLimitExceeded")).toHaveLength(3);
    expect(runs.filter((c) => !c.error)).toHaveLength(1);
    expect(instancesOf(id)).toHaveLength(1);
    const events = (await call(s.url, "GET", `/workspaces/${id}/events`, { token })).body;
    expect(JSON.stringify(events)).not.toContain("failed");
  });

  const permanent: { name: string; arrange: () => () => void; message: RegExp }[] = [
    {
      name: "an AMI that does not exist",
      arrange: () => {
        const saved = new Set(h.cloud.amis);
        h.cloud.amis.clear();
        return () => (h.cloud.amis = saved);
      },
      message: /AMI ami-0fa1ce0000000000a does not exist.*MOLECULE_AWS_AMI_ID.*InvalidAMIID\.NotFound/,
    },
    {
      name: "the vCPU quota",
      arrange: () => {
        h.cloud.maxRunning = 0;
        return () => (h.cloud.maxRunning = 50);
      },
      message: /EC2 quota in us-east-1 for t3\.medium.*Service Quotas.*VcpuLimitExceeded/,
    },
    {
      name: "no capacity in the zone",
      arrange: () => {
        h.cloud.failNext("RunInstances", "InsufficientInstanceCapacity", "We currently do not have sufficient t3.medium capacity in the Availability Zone you requested (us-east-1a).");
        return () => {};
      },
      message: /no capacity for t3\.medium.*another subnet.*InsufficientInstanceCapacity/,
    },
    {
      name: "bad credentials",
      arrange: () => {
        h.cloud.accessKeys.delete(FAKE_KEY_ID);
        return () => h.cloud.accessKeys.add(FAKE_KEY_ID);
      },
      message: /rejected or could not find the terminal worker's credentials.*AuthFailure/,
    },
    {
      name: "a missing IAM permission",
      arrange: () => {
        h.cloud.deny.add("ec2:RunInstances");
        return () => h.cloud.deny.delete("ec2:RunInstances");
      },
      message: /may not call ec2:RunInstances.*workspace-terminal\.md#iam-policy.*UnauthorizedOperation/,
    },
    {
      name: "a runtime image the registry does not have",
      arrange: () => {
        h.cloud.missingImages.add("registry.example/molecule/workspace-hermes:1");
        return () => h.cloud.missingImages.clear();
      },
      message: /container did not start on i-[0-9a-f]+: docker pull registry\.example\/molecule\/workspace-hermes:1 failed/,
    },
  ];
  for (const k of permanent) {
    it(`fails at once with an actionable message on ${k.name}, leaving no instance running`, async () => {
      const restore = k.arrange();
      const runsBefore = h.cloud.callsOf("RunInstances").length;
      let id: string;
      try {
        id = await create(`bad-${k.name}`);
        const w = await settled(id);
        expect(w.status).toBe("failed");
        expect(w.error).toMatch(k.message);
      } finally {
        restore();
      }
      // Not retried: one RunInstances at most (none when the credentials are refused earlier).
      expect(h.cloud.callsOf("RunInstances").length - runsBefore).toBeLessThanOrEqual(1);
      await waitFor(async () => instancesOf(id).every((i) => !alive(i)), 10_000, 20);
    });
  }

  it("a failed workspace restarts into a working one", async () => {
    h.cloud.missingImages.add("registry.example/molecule/workspace-hermes:1");
    const id = await create("fails-then-restarts");
    try {
      expect((await settled(id)).status).toBe("failed");
    } finally {
      h.cloud.missingImages.clear();
    }
    await call(s.url, "POST", `/workspaces/${id}/restart`, { token });
    const w = await waitFor(async () => ((await get(id)).status === "ready" ? get(id) : null), 20_000, 50);
    expect(instancesOf(id).filter(alive).map((i) => i.id)).toEqual([w.instance_id]);
  });
});
