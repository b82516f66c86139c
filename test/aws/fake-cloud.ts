/**
 * A local fake of the two AWS APIs the aws provider talks to, at the HTTP boundary:
 * - EC2 (Query protocol, XML): RunInstances, DescribeInstances, TerminateInstances,
 *   GetConsoleOutput, CreateTags, DescribeInstanceConnectEndpoints;
 * - EC2 Instance Connect (JSON 1.1): SendSSHPublicKey; plus the EIC Endpoint's
 *   OpenTunnel (an HTTP upgrade, then raw bytes to the instance's port 22).
 * It records every call, answers like AWS (same error codes, messages and HTTP
 * statuses), enforces a small IAM model (denied actions, the Role=workspace
 * condition, unknown access keys) and injects faults on demand. "Booting" an
 * instance runs its real user data under bubblewrap with the instance's own /etc/ssh
 * and a fake docker, and copies its stdout to the console, as cloud-init does.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SignatureV4 } from "@smithy/signature-v4";
import { type WebSocket, WebSocketServer } from "ws";
import { NodeSha256 } from "../../apps/terminal-worker/src/providers/aws/eic-signer.ts";

export const SERVER_BIN = fileURLToPath(new URL("./server-bin", import.meta.url));
export const FAKE_ACCOUNT = "123456789012";
export const FAKE_KEY_ID = "AKIAFAKEMOLECULE0001";
export const FAKE_SECRET = "fake-secret-key-for-local-tests-only";

export type InstanceState = "pending" | "running" | "stopping" | "stopped" | "shutting-down" | "terminated";
const STATE_CODE: Record<InstanceState, number> = { pending: 0, running: 16, "shutting-down": 32, terminated: 48, stopping: 64, stopped: 80 };

export interface FakeInstance {
  id: string;
  reservationId: string;
  imageId: string;
  instanceType: string;
  subnetId: string;
  vpcId: string;
  privateIp: string;
  securityGroups: string[];
  state: InstanceState;
  stateReason: string | null;
  tags: Record<string, string>;
  launchTime: Date;
  userData: string;
  console: string;
  clientToken: string | null;
  /** The instance's "disk": etc-ssh (host keys), docker (fake docker state). */
  dir: string;
  hostKey: string;
  /** Where OpenTunnel leads (the instance's sshd), once something listens there. */
  sshPort: number | null;
  /** The workspace security group allows 22/tcp from the EIC Endpoint. */
  sgAllowsEice: boolean;
  /** The AMI runs EC2 Instance Connect's AuthorizedKeysCommand (pushed keys work). */
  eicInstalled: boolean;
  boot: ChildProcess | null;
}

export interface FakeCall {
  service: "ec2" | "eic" | "tunnel";
  action: string;
  params: Record<string, unknown>;
  error?: string;
  at: number;
}

interface Fault {
  code: string;
  message: string;
  status: number;
}

export interface Eice {
  id: string;
  vpcId: string;
  subnetId: string;
  state: string;
  /** Listed as FipsDnsName (default: the same address as DnsName). */
  fipsDnsName?: string;
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** Query-protocol lists: `Prefix.N...` groups, in order. */
function listOf(params: Record<string, string>, prefix: string): Record<string, string>[] {
  const groups = new Map<number, Record<string, string>>();
  for (const [k, v] of Object.entries(params)) {
    const m = new RegExp(`^${prefix.replace(/\./g, "\\.")}\\.(\\d+)(?:\\.(.*))?$`).exec(k);
    if (!m) continue;
    const g = groups.get(Number(m[1])) ?? {};
    g[m[2] ?? ""] = v;
    groups.set(Number(m[1]), g);
  }
  return [...groups.entries()].sort((a, b) => a[0] - b[0]).map(([, g]) => g);
}

export interface FakeCloudOptions {
  /** Directory for instance disks (must not be world-writable on the way: sshd checks it). */
  dir: string;
  region?: string;
  bootDelayMs?: number;
  /** Called once an instance is running (e.g. to start its sshd); returns the port its port 22 maps to. */
  onBoot?: (i: FakeInstance) => Promise<number | null>;
  onTerminate?: (i: FakeInstance) => Promise<void> | void;
}

export class FakeCloud {
  readonly region: string;
  calls: FakeCall[] = [];
  instances = new Map<string, FakeInstance>();
  amis = new Set(["ami-0fa1ce0000000000a"]);
  subnets = new Map([["subnet-0fa1ce0000000000a", { vpcId: "vpc-0fa1ce0000000000a", az: "us-east-1a" }]]);
  securityGroups = new Set(["sg-0fa1ce0000000000a"]);
  endpoints: Eice[] = [{ id: "eice-0fa1ce0000000000a", vpcId: "vpc-0fa1ce0000000000a", subnetId: "subnet-0fa1ce0000000000a", state: "create-complete" }];
  /** IAM: actions the worker's identity may not call ("ec2:RunInstances", "ec2-instance-connect:OpenTunnel"...). */
  deny = new Set<string>();
  accessKeys = new Set([FAKE_KEY_ID]);
  /** Running instances allowed before RunInstances answers VcpuLimitExceeded. */
  maxRunning = 50;
  /** Images the fake registry does not have (docker pull fails). */
  missingImages = new Set<string>();
  pushedKeys: { instanceId: string; osUser: string; key: string; at: number }[] = [];
  /** While true, launched instances stay pending (a slow boot, held as long as a test needs). */
  holdBoot = false;
  /** Runs after RunInstances created the instance and before AWS answers (e.g. to kill the caller). */
  beforeRunInstancesResponse: ((i: FakeInstance) => Promise<void> | void) | null = null;
  private faults = new Map<string, Fault[]>();
  /** AWS's limit of concurrent connections per EIC Endpoint. */
  tunnelLimit = 20;
  /** Tunnels open now, per endpoint id. */
  activeTunnels = new Map<string, number>();
  /** Secret per access key (FAKE_SECRET when absent) and the session token of temporary credentials. */
  secrets = new Map<string, string>();
  sessionTokens = new Map<string, string>();
  /** Frames larger than aws-cli's 65,000 bytes that reached the endpoint, and the largest one. */
  oversizeFrames = 0;
  largestFrame = 0;
  /** The next accepted tunnels answer with a text (error) frame or a close instead of port 22. */
  tunnelFaults: { text?: string; close?: { code: number; reason: string }; greet?: string }[] = [];
  private wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  private servers: Server[] = [];
  private sockets = new Set<Socket>();
  private timers = new Set<NodeJS.Timeout>();
  private closed = false;
  ec2Url = "";
  eicUrl = "";
  private eicPort = 0;

  constructor(private readonly o: FakeCloudOptions) {
    this.region = o.region ?? "us-east-1";
  }

  async start(): Promise<this> {
    const ec2 = createServer((req, res) => void this.body(req).then((b) => this.ec2(req, res, b)));
    const eic = createServer((req, res) => void this.body(req).then((b) => this.eic(req, res, b)));
    eic.on("upgrade", (req, sock, head) => this.openTunnel(req, sock as Socket, head));
    for (const s of [ec2, eic]) {
      s.on("connection", (c) => {
        this.sockets.add(c);
        c.on("close", () => this.sockets.delete(c));
      });
      await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
      this.servers.push(s);
    }
    this.ec2Url = `http://127.0.0.1:${(ec2.address() as { port: number }).port}`;
    this.eicPort = (eic.address() as { port: number }).port;
    this.eicUrl = `http://127.0.0.1:${this.eicPort}`;
    writeFileSync(join(this.o.dir, "missing-images"), "");
    return this;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    for (const i of this.instances.values()) i.boot?.kill("SIGKILL");
    for (const s of this.sockets) s.destroy();
    for (const c of this.wss.clients) c.terminate();
    this.wss.close();
    await Promise.all(this.servers.map((s) => new Promise((r) => s.close(r))));
  }

  /** The next `count` calls of `action` fail with this AWS error. */
  failNext(action: string, code: string, message: string, status = 400, count = 1): void {
    const list = this.faults.get(action) ?? [];
    for (let n = 0; n < count; n++) list.push({ code, message, status });
    this.faults.set(action, list);
  }

  callsOf(action: string): FakeCall[] {
    return this.calls.filter((c) => c.action === action);
  }

  setState(id: string, state: InstanceState): void {
    const i = this.instances.get(id);
    if (i) i.state = state;
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.closed) fn();
    }, ms);
    this.timers.add(t);
  }

  private body(req: IncomingMessage): Promise<string> {
    return new Promise((resolve) => {
      let b = "";
      req.setEncoding("utf8");
      req.on("data", (c: string) => (b += c));
      req.on("end", () => resolve(b));
    });
  }

  /** The access key id from a SigV4 Authorization header. */
  private keyId(req: IncomingMessage): string | null {
    return /Credential=([^/,\s]+)\//.exec(req.headers.authorization ?? "")?.[1] ?? null;
  }

  private fault(action: string): Fault | null {
    const list = this.faults.get(action);
    return list?.shift() ?? null;
  }

  // ---- EC2 ------------------------------------------------------------------------

  private ec2(req: IncomingMessage, res: ServerResponse, body: string): void {
    const params = Object.fromEntries(new URLSearchParams(body));
    const action = params.Action ?? "";
    const call: FakeCall = { service: "ec2", action, params, at: Date.now() };
    this.calls.push(call);
    const fail = (code: string, message: string, status = 400) => {
      call.error = code;
      res.writeHead(status, { "content-type": "text/xml;charset=UTF-8" });
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${code}</Code><Message>${xmlEscape(message)}</Message></Error></Errors><RequestID>${randomUUID()}</RequestID></Response>`,
      );
    };
    const key = this.keyId(req);
    if (!key || !this.accessKeys.has(key)) return fail("AuthFailure", "AWS was not able to validate the provided access credentials", 401);
    const injected = this.fault(action);
    if (injected) return fail(injected.code, injected.message, injected.status);
    if (this.deny.has(`ec2:${action}`)) {
      return fail(
        "UnauthorizedOperation",
        `You are not authorized to perform this operation. User: arn:aws:iam::${FAKE_ACCOUNT}:user/molecule-worker is not authorized to perform: ec2:${action} because no identity-based policy allows the ec2:${action} action. Encoded authorization failure message: ${randomBytes(24).toString("base64")}`,
        403,
      );
    }
    const ok = (inner: string) => {
      res.writeHead(200, { "content-type": "text/xml;charset=UTF-8" });
      res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>${randomUUID()}</requestId>${inner}</${action}Response>`);
    };
    try {
      switch (action) {
        case "RunInstances":
          return this.runInstances(params, ok, fail);
        case "DescribeInstances": {
          const ids = listOf(params, "InstanceId").map((g) => g[""]!);
          for (const id of ids) if (!this.instances.has(id)) return fail("InvalidInstanceID.NotFound", `The instance ID '${id}' does not exist`);
          const filters = listOf(params, "Filter").map((f) => ({ name: f.Name!, values: Object.entries(f).filter(([k]) => k.startsWith("Value.")).map(([, v]) => v) }));
          const match = (i: FakeInstance) =>
            filters.every((f) => {
              if (f.name.startsWith("tag:")) return f.values.includes(i.tags[f.name.slice(4)] ?? "\0");
              if (f.name === "instance-state-name") return f.values.includes(i.state);
              if (f.name === "instance-id") return f.values.includes(i.id);
              if (f.name === "vpc-id") return f.values.includes(i.vpcId);
              throw new Error(`fake: unsupported filter ${f.name}`);
            });
          const found = [...this.instances.values()].filter((i) => (ids.length === 0 || ids.includes(i.id)) && match(i));
          const byRes = new Map<string, FakeInstance[]>();
          for (const i of found) byRes.set(i.reservationId, [...(byRes.get(i.reservationId) ?? []), i]);
          return ok(
            `<reservationSet>${[...byRes.entries()]
              .map(([rid, list]) => `<item><reservationId>${rid}</reservationId><ownerId>${FAKE_ACCOUNT}</ownerId><groupSet/><instancesSet>${list.map((i) => this.instanceXml(i)).join("")}</instancesSet></item>`)
              .join("")}</reservationSet>`,
          );
        }
        case "TerminateInstances": {
          const ids = listOf(params, "InstanceId").map((g) => g[""]!);
          for (const id of ids) if (!this.instances.has(id)) return fail("InvalidInstanceID.NotFound", `The instance ID '${id}' does not exist`);
          const items = ids.map((id) => {
            const i = this.instances.get(id)!;
            const prev = i.state;
            if (prev !== "terminated" && prev !== "shutting-down") this.terminate(i);
            return `<item><instanceId>${id}</instanceId><currentState><code>${STATE_CODE[i.state]}</code><name>${i.state}</name></currentState><previousState><code>${STATE_CODE[prev]}</code><name>${prev}</name></previousState></item>`;
          });
          return ok(`<instancesSet>${items.join("")}</instancesSet>`);
        }
        case "GetConsoleOutput": {
          const i = this.instances.get(params.InstanceId ?? "");
          if (!i) return fail("InvalidInstanceID.NotFound", `The instance ID '${params.InstanceId}' does not exist`);
          const out = i.console ? `<output>${Buffer.from(i.console).toString("base64")}</output>` : "";
          return ok(`<instanceId>${i.id}</instanceId><timestamp>${new Date().toISOString()}</timestamp>${out}`);
        }
        case "CreateTags": {
          const ids = listOf(params, "ResourceId").map((g) => g[""]!);
          const tags = listOf(params, "Tag");
          for (const id of ids) {
            const i = this.instances.get(id);
            if (!i) return fail("InvalidInstanceID.NotFound", `The instance ID '${id}' does not exist`);
            for (const t of tags) i.tags[t.Key!] = t.Value ?? "";
          }
          return ok("<return>true</return>");
        }
        case "DescribeInstanceConnectEndpoints": {
          const filters = listOf(params, "Filter").map((f) => ({ name: f.Name!, values: Object.entries(f).filter(([k]) => k.startsWith("Value.")).map(([, v]) => v) }));
          const ids = listOf(params, "InstanceConnectEndpointId").map((g) => g[""]!);
          const list = this.endpoints.filter(
            (e) =>
              (ids.length === 0 || ids.includes(e.id)) &&
              filters.every((f) => (f.name === "vpc-id" ? f.values.includes(e.vpcId) : f.name === "state" ? f.values.includes(e.state) : true)),
          );
          return ok(
            `<instanceConnectEndpointSet>${list
              .map(
                (e) =>
                  `<item><ownerId>${FAKE_ACCOUNT}</ownerId><instanceConnectEndpointId>${e.id}</instanceConnectEndpointId><state>${e.state}</state><dnsName>127.0.0.1:${this.eicPort}</dnsName><fipsDnsName>${e.fipsDnsName ?? `127.0.0.1:${this.eicPort}`}</fipsDnsName><subnetId>${e.subnetId}</subnetId><vpcId>${e.vpcId}</vpcId></item>`,
              )
              .join("")}</instanceConnectEndpointSet>`,
          );
        }
        default:
          return fail("InvalidAction", `The action ${action} is not valid for this web service.`);
      }
    } catch (err) {
      return fail("InternalError", (err as Error).message, 500);
    }
  }

  private instanceXml(i: FakeInstance): string {
    const tags = Object.entries(i.tags)
      .map(([k, v]) => `<item><key>${xmlEscape(k)}</key><value>${xmlEscape(v)}</value></item>`)
      .join("");
    return `<item><instanceId>${i.id}</instanceId><imageId>${i.imageId}</imageId><instanceState><code>${STATE_CODE[i.state]}</code><name>${i.state}</name></instanceState><privateIpAddress>${i.privateIp}</privateIpAddress><instanceType>${i.instanceType}</instanceType><launchTime>${i.launchTime.toISOString()}</launchTime><placement><availabilityZone>${this.subnets.get(i.subnetId)?.az ?? "us-east-1a"}</availabilityZone></placement><subnetId>${i.subnetId}</subnetId><vpcId>${i.vpcId}</vpcId><groupSet>${i.securityGroups.map((g) => `<item><groupId>${g}</groupId><groupName>workspace</groupName></item>`).join("")}</groupSet>${i.clientToken ? `<clientToken>${xmlEscape(i.clientToken)}</clientToken>` : ""}${i.stateReason ? `<stateReason><code>Client.UserInitiatedShutdown</code><message>${xmlEscape(i.stateReason)}</message></stateReason>` : ""}<tagSet>${tags}</tagSet></item>`;
  }

  private runInstances(params: Record<string, string>, ok: (x: string) => void, fail: (c: string, m: string, s?: number) => void): void {
    const token = params.ClientToken ?? null;
    if (token) {
      const prior = [...this.instances.values()].find((i) => i.clientToken === token);
      if (prior) {
        // Idempotent replay: the same reservation, whatever state it is in now.
        return ok(`<reservationId>${prior.reservationId}</reservationId><ownerId>${FAKE_ACCOUNT}</ownerId><groupSet/><instancesSet>${this.instanceXml(prior)}</instancesSet>`);
      }
    }
    const imageId = params.ImageId ?? "";
    if (!this.amis.has(imageId)) return fail("InvalidAMIID.NotFound", `The image id '[${imageId}]' does not exist`);
    const subnet = this.subnets.get(params.SubnetId ?? "");
    if (!subnet) return fail("InvalidSubnetID.NotFound", `The subnet ID '${params.SubnetId}' does not exist`);
    const sgs = listOf(params, "SecurityGroupId").map((g) => g[""]!);
    for (const g of sgs) if (!this.securityGroups.has(g)) return fail("InvalidGroup.NotFound", `The security group '${g}' does not exist`);
    const running = [...this.instances.values()].filter((i) => i.state === "pending" || i.state === "running").length;
    if (running >= this.maxRunning) {
      return fail(
        "VcpuLimitExceeded",
        "You have requested more vCPU capacity than your current vCPU limit of 8 allows for the instance bucket that the specified instance type belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit.",
      );
    }
    const tags: Record<string, string> = {};
    for (const spec of listOf(params, "TagSpecification")) {
      if (spec.ResourceType !== "instance") continue;
      for (let n = 1; spec[`Tag.${n}.Key`] !== undefined; n++) tags[spec[`Tag.${n}.Key`]!] = spec[`Tag.${n}.Value`] ?? "";
    }
    const id = `i-${randomBytes(9).toString("hex").slice(0, 17)}`;
    const dir = join(this.o.dir, id);
    mkdirSync(join(dir, "etc-ssh"), { recursive: true, mode: 0o755 });
    mkdirSync(join(dir, "docker"), { recursive: true, mode: 0o755 });
    const keyFile = join(dir, "etc-ssh", "ssh_host_ed25519_key");
    const kg = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `root@${id}`, "-f", keyFile]);
    if (kg.status !== 0) throw new Error(`ssh-keygen failed: ${kg.stderr}`);
    const inst: FakeInstance = {
      id,
      reservationId: `r-${randomBytes(9).toString("hex").slice(0, 17)}`,
      imageId,
      instanceType: params.InstanceType ?? "",
      subnetId: params.SubnetId!,
      vpcId: subnet.vpcId,
      privateIp: `10.0.${1 + (this.instances.size >> 8)}.${(this.instances.size % 250) + 4}`,
      securityGroups: sgs,
      state: "pending",
      stateReason: null,
      tags,
      launchTime: new Date(),
      userData: Buffer.from(params.UserData ?? "", "base64").toString("utf8"),
      console: "",
      clientToken: token,
      dir,
      hostKey: readFileSync(`${keyFile}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" "),
      sshPort: null,
      sgAllowsEice: true,
      eicInstalled: true,
      boot: null,
    };
    this.instances.set(id, inst);
    this.later(this.o.bootDelayMs ?? 150, () => void this.boot(inst));
    const answer = () => ok(`<reservationId>${inst.reservationId}</reservationId><ownerId>${FAKE_ACCOUNT}</ownerId><groupSet/><instancesSet>${this.instanceXml(inst)}</instancesSet>`);
    if (!this.beforeRunInstancesResponse) return answer();
    void Promise.resolve(this.beforeRunInstancesResponse(inst)).finally(answer);
  }

  /** running, then cloud-init: the user data runs with the instance's /etc/ssh and docker, stdout to the console. */
  private async boot(i: FakeInstance): Promise<void> {
    if (i.state !== "pending") return;
    if (this.holdBoot) return this.later(50, () => void this.boot(i));
    i.state = "running";
    i.console += `[    0.000000] Linux version 6.1.0 (fake) #1 SMP\r\n[    2.100000] cloud-init[712]: Cloud-init v. 23.4 running 'modules:final'\r\n`;
    i.sshPort = (await this.o.onBoot?.(i)) ?? null;
    if (!i.userData.startsWith("#!")) return;
    writeFileSync(join(i.dir, "user-data"), i.userData, { mode: 0o700 });
    writeFileSync(join(this.o.dir, "missing-images"), [...this.missingImages].join("\n") + "\n");
    const child = spawn(
      "bwrap",
      [
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/tmp",
        // The fake cloud's own files may live under /tmp (a checkout there, the test's state dir):
        // bring them back above the fresh /tmp.
        "--ro-bind", SERVER_BIN, SERVER_BIN,
        "--bind", this.o.dir, this.o.dir,
        "--bind", join(i.dir, "etc-ssh"), "/etc/ssh",
        "--bind", join(i.dir, "docker"), join(i.dir, "docker"),
        "--unshare-pid",
        "--die-with-parent",
        "--clearenv",
        "--setenv", "PATH", `${SERVER_BIN}:/usr/sbin:/usr/bin:/sbin:/bin`,
        "--setenv", "FAKE_DOCKER_STATE", join(i.dir, "docker"),
        "--setenv", "FAKE_MISSING_IMAGES", join(this.o.dir, "missing-images"),
        "/bin/bash", join(i.dir, "user-data"),
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    i.boot = child;
    child.stdout!.on("data", (b: Buffer) => (i.console += b.toString("utf8").replace(/\r?\n/g, "\r\n")));
    child.stderr!.on("data", (b: Buffer) => (i.console += b.toString("utf8").replace(/\r?\n/g, "\r\n")));
    child.on("exit", () => (i.boot = null));
  }

  private terminate(i: FakeInstance): void {
    i.state = "shutting-down";
    i.stateReason = "Client.UserInitiatedShutdown: User initiated shutdown";
    i.boot?.kill("SIGKILL");
    void Promise.resolve(this.o.onTerminate?.(i)).catch(() => {});
    i.sshPort = null;
    this.later(100, () => (i.state = "terminated"));
  }

  // ---- EC2 Instance Connect ----------------------------------------------------------

  private eic(req: IncomingMessage, res: ServerResponse, body: string): void {
    const url = new URL(req.url ?? "/", "http://x");
    const keys = /^\/_fake\/active-keys\/(i-[0-9a-f]+)\/([a-z_][a-z0-9_-]*)$/.exec(url.pathname);
    if (req.method === "GET" && keys) {
      // What the instance's AuthorizedKeysCommand sees (IMDS managed-ssh-keys on real EC2): keys pushed in the last 60 s.
      const inst = this.instances.get(keys[1]!);
      const now = Date.now();
      const list = inst?.eicInstalled ? this.pushedKeys.filter((k) => k.instanceId === keys[1] && k.osUser === keys[2] && now - k.at < 60_000).map((k) => k.key) : [];
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(list.map((k) => `${k}\n`).join(""));
      return;
    }
    const target = String(req.headers["x-amz-target"] ?? "");
    const action = target.split(".").pop() ?? "";
    let params: Record<string, unknown> = {};
    try {
      params = body ? (JSON.parse(body) as Record<string, unknown>) : {};
    } catch {
      // malformed: answered below
    }
    const call: FakeCall = { service: "eic", action, params, at: Date.now() };
    this.calls.push(call);
    const fail = (type: string, message: string, status = 400) => {
      call.error = type;
      res.writeHead(status, { "content-type": "application/x-amz-json-1.1", "x-amzn-requestid": randomUUID() });
      res.end(JSON.stringify({ __type: type, Message: message }));
    };
    const key = this.keyId(req);
    if (!key || !this.accessKeys.has(key)) return fail("UnrecognizedClientException", "The security token included in the request is invalid.");
    const injected = this.fault(action);
    if (injected) return fail(injected.code, injected.message, injected.status);
    if (action !== "SendSSHPublicKey") return fail("UnknownOperationException", `unknown operation ${target}`);
    const instanceId = String(params.InstanceId ?? "");
    const inst = this.instances.get(instanceId);
    const resource = `arn:aws:ec2:${this.region}:${FAKE_ACCOUNT}:instance/${instanceId}`;
    // The documented policy allows SendSSHPublicKey only with aws:ResourceTag/Role=workspace.
    if (this.deny.has("ec2-instance-connect:SendSSHPublicKey") || (inst && inst.tags.Role !== "workspace")) {
      return fail(
        "AccessDeniedException",
        `User: arn:aws:iam::${FAKE_ACCOUNT}:user/molecule-worker is not authorized to perform: ec2-instance-connect:SendSSHPublicKey on resource: ${resource} because no identity-based policy allows the ec2-instance-connect:SendSSHPublicKey action`,
      );
    }
    if (!inst || inst.state === "terminated") return fail("EC2InstanceNotFoundException", `Instance not found: ${instanceId}`);
    if (inst.state !== "running") return fail("EC2InstanceStateInvalidException", "Instance is not in a valid state");
    const pub = String(params.SSHPublicKey ?? "");
    if (!/^ssh-ed25519 [A-Za-z0-9+/=]+( \S+)?$/.test(pub) || typeof params.InstanceOSUser !== "string") return fail("InvalidArgsException", "Invalid SSH public key or OS user");
    this.pushedKeys.push({ instanceId, osUser: params.InstanceOSUser, key: pub, at: Date.now() });
    res.writeHead(200, { "content-type": "application/x-amz-json-1.1" });
    res.end(JSON.stringify({ RequestId: randomUUID(), Success: true }));
  }

  /**
   * The EIC Endpoint's openTunnel: checks the presigned URL as AWS does (SigV4 query
   * signature recomputed with the test secret, service and region in the scope, only
   * `host` signed, not expired), the IAM model, the endpoint and its connection limit;
   * then a WebSocket whose binary frames carry the instance's port 22 both ways.
   */
  private openTunnel(req: IncomingMessage, sock: Socket, head: Buffer): void {
    this.sockets.add(sock);
    sock.on("close", () => this.sockets.delete(sock));
    sock.on("error", () => {});
    const url = new URL(req.url ?? "/", "http://x");
    const params = Object.fromEntries(url.searchParams);
    const call: FakeCall = { service: "tunnel", action: "OpenTunnel", params, at: Date.now() };
    this.calls.push(call);
    const refuse = (status: number, code: string, message: string) => {
      call.error = code;
      const body = JSON.stringify({ ErrorCode: code, Message: message });
      const text = { 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests" }[status] ?? "Error";
      sock.end(`HTTP/1.1 ${status} ${text}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-amzn-requestid: ${randomUUID()}\r\n\r\n${body}`);
    };
    void this.verifyPresigned(req, url).then((bad) => {
      if (bad) return refuse(bad.status, bad.code, bad.message);
      const injected = this.fault("OpenTunnel");
      if (injected) return refuse(injected.status, injected.code, injected.message);
      const eice = this.endpoints.find((e) => e.id === params.instanceConnectEndpointId);
      if (this.deny.has("ec2-instance-connect:OpenTunnel")) {
        return refuse(
          403,
          "AccessDeniedException",
          `User: arn:aws:iam::${FAKE_ACCOUNT}:user/molecule-worker is not authorized to perform: ec2-instance-connect:OpenTunnel on resource: arn:aws:ec2:${this.region}:${FAKE_ACCOUNT}:instance-connect-endpoint/${params.instanceConnectEndpointId} because no identity-based policy allows the ec2-instance-connect:OpenTunnel action`,
        );
      }
      if (!eice) return refuse(400, "InvalidParameter", "The specified instance connect endpoint does not exist.");
      if (params.remotePort !== "22" && params.remotePort !== "3389") {
        return refuse(400, "InvalidParameter", "The specified RemotePort is not valid. Specify either 22 or 3389 as the RemotePort and retry your request.");
      }
      const max = Number(params.maxTunnelDuration ?? 3600);
      if (!Number.isInteger(max) || max < 1 || max > 3600) return refuse(400, "InvalidParameter", "The maxTunnelDuration must be between 1 and 3600 seconds.");
      const active = this.activeTunnels.get(eice.id) ?? 0;
      if (active >= this.tunnelLimit) {
        return refuse(429, "ConnectionLimitExceededException", `The maximum number of concurrent connections (${this.tunnelLimit}) for the Instance Connect Endpoint ${eice.id} has been reached.`);
      }
      this.wss.handleUpgrade(req, sock, head, (ws) => this.tunnel(ws, eice, params, max, call));
    });
  }

  /** null when the presigned URL is good, else what AWS answers. */
  private async verifyPresigned(req: IncomingMessage, url: URL): Promise<{ status: number; code: string; message: string } | null> {
    const q = url.searchParams;
    const denied = (code: string, message: string) => ({ status: 403, code, message });
    if (q.get("X-Amz-Algorithm") !== "AWS4-HMAC-SHA256" || !q.get("X-Amz-Signature") || !q.get("X-Amz-Credential") || !q.get("X-Amz-Date")) {
      return denied("MissingAuthenticationTokenException", "Missing Authentication Token");
    }
    const [key, day, region, service, term] = q.get("X-Amz-Credential")!.split("/");
    if (!key || !this.accessKeys.has(key)) return denied("UnrecognizedClientException", "The security token included in the request is invalid.");
    const date = q.get("X-Amz-Date")!;
    const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(date);
    if (!m || day !== date.slice(0, 8) || term !== "aws4_request") return denied("IncompleteSignatureException", `Invalid credential scope ${q.get("X-Amz-Credential")}`);
    if (service !== "ec2-instance-connect" || region !== this.region) {
      return denied("InvalidSignatureException", `Credential should be scoped to a valid region and service: ${this.region}/ec2-instance-connect, not ${region}/${service}.`);
    }
    if (q.get("X-Amz-SignedHeaders") !== "host") return denied("InvalidSignatureException", "The request must sign exactly the host header.");
    const signedAt = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
    const expires = Number(q.get("X-Amz-Expires") ?? "0");
    const token = q.get("X-Amz-Security-Token");
    if (token !== null && this.sessionTokens.get(key) !== token) return denied("UnrecognizedClientException", "The security token included in the request is invalid.");
    const query: Record<string, string> = {};
    for (const [k, v] of q) if (!/^X-Amz-(Algorithm|Credential|Date|Expires|SignedHeaders|Signature|Security-Token)$/.test(k)) query[k] = v;
    const signer = new SignatureV4({
      service: "ec2-instance-connect",
      region: this.region,
      credentials: { accessKeyId: key, secretAccessKey: this.secrets.get(key) ?? FAKE_SECRET, ...(token !== null ? { sessionToken: token } : {}) },
      sha256: NodeSha256,
    });
    const host = String(req.headers.host ?? "");
    const again = await signer.presign(
      { method: "GET", protocol: "https:", hostname: host.split(":")[0]!, path: url.pathname, query, headers: { host } },
      { expiresIn: expires, signingDate: new Date(signedAt) },
    );
    if (again.query?.["X-Amz-Signature"] !== q.get("X-Amz-Signature")) {
      return denied(
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
      );
    }
    const now = Date.now();
    if (now > signedAt + expires * 1000) {
      return denied("InvalidSignatureException", `Signature expired: ${date} is now earlier than ${new Date(now - expires * 1000).toISOString().replace(/[-:]|\.\d+/g, "")} (${new Date(now).toISOString().replace(/[-:]|\.\d+/g, "")} - ${expires} sec.)`);
    }
    return null;
  }

  /** An accepted tunnel: the instance's port 22 in binary frames, closed at its maximum duration. */
  private tunnel(ws: WebSocket, eice: Eice, params: Record<string, string>, maxSec: number, call: FakeCall): void {
    this.activeTunnels.set(eice.id, (this.activeTunnels.get(eice.id) ?? 0) + 1);
    let counted = true;
    const release = () => {
      if (!counted) return;
      counted = false;
      this.activeTunnels.set(eice.id, (this.activeTunnels.get(eice.id) ?? 1) - 1);
    };
    ws.on("close", release);
    ws.on("error", () => ws.terminate());
    const special = this.tunnelFaults.shift();
    if (special?.text) {
      ws.send(special.text);
      return;
    }
    if (special?.close) {
      ws.close(special.close.code, special.close.reason);
      return;
    }
    // Bytes sent with the 101 (as sshd's banner can be): the client must not lose them.
    if (special?.greet) ws.send(Buffer.from(special.greet), { binary: true });
    const inst = [...this.instances.values()].find((i) => i.privateIp === params.privateIpAddress && i.state === "running");
    if (!inst || !inst.sgAllowsEice || !inst.sshPort) {
      // The endpoint cannot reach port 22 (security group, nothing listening): the tunnel opens, then drops.
      call.error = "TargetUnreachable";
      const t = setTimeout(() => ws.close(1011, `Failed to connect to ${params.privateIpAddress}:${params.remotePort}: connection timed out`), 50);
      ws.on("close", () => clearTimeout(t));
      return;
    }
    const up = connect(inst.sshPort, "127.0.0.1");
    this.sockets.add(up);
    up.on("close", () => {
      this.sockets.delete(up);
      if (ws.readyState === ws.OPEN) ws.close(1000);
    });
    up.on("error", () => ws.terminate());
    ws.on("close", () => up.destroy());
    ws.on("message", (data, isBinary) => {
      if (!isBinary) return ws.close(1003, "binary frames only");
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      if (buf.length > 65_000) this.oversizeFrames++;
      this.largestFrame = Math.max(this.largestFrame, buf.length);
      up.write(buf);
    });
    up.on("data", (b: Buffer) => ws.send(b, { binary: true }));
    const t = setTimeout(() => ws.close(1000), maxSec * 1000);
    ws.on("close", () => clearTimeout(t));
  }

  /** `instance-id` of whatever a tunnel reached, for tests. */
  get eicEndpointPort(): number {
    return this.eicPort;
  }
}
