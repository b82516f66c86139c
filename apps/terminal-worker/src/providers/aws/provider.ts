import { randomUUID } from "node:crypto";
import { INSTANCE_ID_RE } from "@molecule/shared";
import {
  ProviderError,
  TerminalUnavailableError,
  type Provider,
  type ProvisionContext,
  type ShellCommand,
  type TerminalContext,
  type WorkspaceRow,
} from "../types.ts";
import type { AwsProviderOptions } from "./config.ts";
import { createEc2, TAG_HOST_KEY, TAG_REQUEST, TAG_WORKSPACE, type InstanceInfo } from "./ec2.ts";
import { createKeyPusher, prepareKeyDir, writeSessionKey } from "./eic.ts";
import type { TunnelBridge } from "./eic-bridge.ts";
import { createTunnelPlanner, EIC_PROXY_SCRIPT, SAFE_PATH_RE, type TunnelTarget } from "./eic-tunnel.ts";
import { TAG, TunnelError } from "./eic-wire.mjs";
import { INFRA_DOC } from "./errors.ts";
import { buildSshArgs, diagnoseSshExit, knownHostsLine } from "./ssh-command.ts";
import { createCliChecker, findExecutable } from "./tools.ts";
import { buildUserData, containerName, parseConsole, validHostKey, type ConsoleState } from "./user-data.ts";

const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** Right after RunInstances, DescribeInstances may not know the instance yet (eventual consistency). */
const INVISIBLE_GRACE_MS = 60_000;

export type AwsProvider = Provider & { close(): void };

const wiring = (what: string) => new TerminalUnavailableError("eic_wiring_incomplete", `EIC wiring incomplete: ${what}; see ${INFRA_DOC}#troubleshooting`);

/**
 * Workspaces as EC2 instances in the tenant's account (tagged Role=workspace), and
 * their Terminal through an EC2 Instance Connect Endpoint: a per-session key pushed
 * with SendSSHPublicKey, then `ssh -tt` running `docker exec -it <container> /bin/bash`
 * on the instance. The tunnel (ssh's ProxyCommand) is ours by default (native:
 * discovery and SigV4 presigning in the worker, bytes through eic-proxy.mjs) or
 * aws-cli's `ec2-instance-connect open-tunnel` (MOLECULE_AWS_TUNNEL=aws-cli).
 */
export function createAwsProvider(o: AwsProviderOptions): AwsProvider {
  const ec2 = createEc2(o);
  const keys = createKeyPusher(o);
  const path = o.childEnv.PATH ?? DEFAULT_PATH;
  const checkAwsCli = createCliChecker({ ...o.childEnv, PATH: path });
  const tunnels = createTunnelPlanner(o, ec2);
  const native = (o.tunnel ?? "native") === "native";
  const log = o.log;
  let keyDirReady: Promise<void> | null = null;
  const ensureKeyDir = () =>
    (keyDirReady ??= prepareKeyDir(o.keyDir).catch((err) => {
      keyDirReady = null;
      throw err;
    }));
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  /** Polls until the instance runs and its boot script reports the container answering. */
  async function waitReady(id: string, container: string): Promise<ConsoleState> {
    const started = Date.now();
    const deadline = started + o.readyTimeoutMs;
    let last: ConsoleState | null = null;
    let lastState = "unknown";
    for (;;) {
      const i = await ec2.describeInstance(id);
      if (!i) {
        if (Date.now() - started > INVISIBLE_GRACE_MS) throw new ProviderError(`the instance ${id} disappeared while starting`, false, "instance_lost");
      } else if (i.state === "running") {
        last = parseConsole(await ec2.consoleOutput(id), container);
        if (last.failed) throw new ProviderError(`the workspace container did not start on ${id}: ${last.failed}`, false, "container_failed");
        if (last.ready) return last;
      } else if (i.state !== "pending") {
        throw new ProviderError(`the instance ${id} is ${i.state}${i.stateReason ? ` (${i.stateReason})` : ""} instead of starting`, false, "instance_lost");
      }
      lastState = i?.state ?? "not visible yet";
      if (Date.now() > deadline) {
        const seen = last?.tail ? `; last console lines: ${last.tail}` : "";
        throw new ProviderError(
          `the workspace instance ${id} did not report its container ready within ${Math.round(o.readyTimeoutMs / 1000)} s (instance ${lastState}${seen})`,
          false,
          "ready_timeout",
        );
      }
      await sleep(o.pollMs);
    }
  }

  /**
   * Create and restart are one idempotent flow: adopt the instance this request
   * already launched (found by tag after a crash) or launch one, record its id at
   * once, wait for it, pin its host key, then terminate every other instance of the
   * workspace (the one a restart replaces, or strays of a crashed attempt).
   */
  async function provision(workspace: WorkspaceRow, ctx: ProvisionContext, action: "create" | "restart"): Promise<{ instanceId: string }> {
    const requestTag = ctx.requestId ?? (action === "create" ? `${workspace.id}-create` : `${workspace.id}-restart-${randomUUID()}`);
    const container = containerName(workspace.id);
    const live = await ec2.findWorkspaceInstances(workspace.id);
    let inst: InstanceInfo | undefined = live.find((i) => i.tags[TAG_REQUEST] === requestTag);
    if (inst) {
      log?.info({ workspace_id: workspace.id, instance_id: inst.id, state: inst.state }, "adopting the instance this request launched before");
    } else {
      const userData = buildUserData({ workspaceId: workspace.id, orgId: o.orgId, runtime: workspace.runtime, tier: workspace.tier, image: o.runtimeImage });
      ctx.step?.("launching_instance");
      inst = await ec2.launch({ workspaceId: workspace.id, name: workspace.name, tier: workspace.tier, requestTag, userData });
      log?.info({ workspace_id: workspace.id, instance_id: inst.id, action }, "instance launched");
      if (inst.state === "shutting-down" || inst.state === "terminated") {
        throw new ProviderError(`the instance ${inst.id} launched for this request was terminated${inst.stateReason ? ` (${inst.stateReason})` : ""}`, false, "instance_lost");
      }
    }
    const id = inst.id;
    await ctx.recordInstanceId(id);
    let ready: ConsoleState;
    try {
      ctx.step?.("waiting_for_ssh");
      ready = await waitReady(id, container);
    } catch (err) {
      // A permanent failure leaves nothing running (and billing); a transient one keeps the instance for the retry to adopt.
      if (err instanceof ProviderError && !err.transient) {
        await ec2.terminate([id]).catch((e) => log?.warn({ err: (e as Error).message, instance_id: id }, "terminating a failed instance failed"));
      }
      throw err;
    }
    const hostKey = ready.hostKeys[0];
    if (hostKey) {
      await ec2.tag(id, TAG_HOST_KEY, hostKey).catch((e) => log?.warn({ err: (e as Error).message, instance_id: id }, "could not record the host key: the Terminal will not pin it"));
    } else {
      log?.warn({ instance_id: id }, "no SSH host key on the console: the Terminal will not pin it");
    }
    const others = live.filter((i) => i.id !== id).map((i) => i.id);
    if (others.length) {
      await ec2.terminate(others);
      log?.info({ workspace_id: workspace.id, terminated: others }, "terminated the workspace's other instances");
    }
    return { instanceId: id };
  }

  async function destroy(workspace: WorkspaceRow): Promise<void> {
    const ids = new Set((await ec2.findWorkspaceInstances(workspace.id)).map((i) => i.id));
    if (workspace.instanceId && INSTANCE_ID_RE.test(workspace.instanceId) && !ids.has(workspace.instanceId)) {
      // Tags are what prove the instance is this workspace's: never terminate on the recorded id alone.
      const i = await ec2.describeInstance(workspace.instanceId);
      if (i && i.tags[TAG_WORKSPACE] === workspace.id && !["shutting-down", "terminated"].includes(i.state)) ids.add(i.id);
    }
    await ec2.terminate([...ids]);
    if (ids.size) log?.info({ workspace_id: workspace.id, terminated: [...ids] }, "workspace instances terminated");
  }

  /** The instance as EC2 sees it now; setup problems become protocol errors. */
  async function runningInstance(instanceId: string, workspaceId: string): Promise<InstanceInfo> {
    let inst: InstanceInfo | null;
    try {
      inst = await ec2.describeInstance(instanceId);
    } catch (err) {
      if (err instanceof ProviderError && ["aws_access_denied", "aws_credentials"].includes(err.code)) throw wiring(err.message);
      throw new Error(err instanceof ProviderError ? err.message : `DescribeInstances failed: ${(err as Error).message}`);
    }
    if (!inst || inst.state === "terminated" || inst.state === "shutting-down") {
      throw new TerminalUnavailableError("not_ready", `the workspace instance ${instanceId} no longer exists; restart the workspace`);
    }
    if (inst.tags[TAG_WORKSPACE] !== workspaceId) {
      throw new TerminalUnavailableError("not_ready", `the instance ${instanceId} is not tagged as this workspace's; restart the workspace`);
    }
    if (inst.state !== "running") {
      throw new TerminalUnavailableError("not_ready", `the workspace instance ${instanceId} is ${inst.state}, not running; start it or restart the workspace`);
    }
    return inst;
  }

  async function terminalCommand(ctx: TerminalContext): Promise<ShellCommand> {
    const instanceId = ctx.instanceId;
    if (!instanceId || !INSTANCE_ID_RE.test(instanceId)) throw new TerminalUnavailableError("not_ready", "the workspace has no instance yet");
    const container = containerName(ctx.workspaceId);
    const sshPath = await findExecutable(o.sshBin, path);
    if (!sshPath) throw wiring(`ssh is not installed on the terminal worker (${o.sshBin} not found on its PATH); install openssh-client`);
    let relay: NonNullable<Parameters<typeof buildSshArgs>[0]["native"]> | null = null;
    if (native) {
      // The relay from ssh to the worker's socket: socat (a few MB) when installed, else plain node.
      const socat = o.relay === "node" ? null : await findExecutable("socat", path);
      if (socat && SAFE_PATH_RE.test(socat)) relay = { relay: "socat", bin: socat, socket: "" };
      else if (SAFE_PATH_RE.test(process.execPath) && SAFE_PATH_RE.test(EIC_PROXY_SCRIPT)) relay = { relay: "node", bin: process.execPath, script: EIC_PROXY_SCRIPT, socket: "" };
      else throw wiring(`node (${process.execPath}) or ${EIC_PROXY_SCRIPT} lies under a path with characters ssh's ProxyCommand cannot carry, and socat is not installed; install socat or the worker under a plain path`);
    } else {
      const awsPath = await findExecutable(o.awsCli, path);
      if (!awsPath) throw wiring(`aws-cli is not installed on the terminal worker (${o.awsCli} not found on its PATH); install aws-cli v2, or use the built-in tunnel (MOLECULE_AWS_TUNNEL=native)`);
      const cli = await checkAwsCli(awsPath);
      if (!cli.ok) throw wiring(cli.problem ?? "aws-cli is not usable");
    }
    const [inst] = await Promise.all([runningInstance(instanceId, ctx.workspaceId), ensureKeyDir()]);
    // Native: the endpoint is found before any key is pushed, so a VPC without one fails fast and clearly.
    const target: TunnelTarget | null = native ? await tunnels.target(inst) : null;
    const pinned = inst.tags[TAG_HOST_KEY];
    const [type, b64] = (pinned ?? "").split(" ");
    const hostKey = type && b64 && validHostKey(type, b64) ? `${type} ${b64}` : null;
    const k = await writeSessionKey(o.keyDir, ctx.sessionId, hostKey ? knownHostsLine(instanceId, hostKey) : null);
    let args: string[];
    let bridge: TunnelBridge | null = null;
    const diag = { instanceId, osUser: o.osUser, connectTimeoutSec: o.connectTimeoutSec, tunnelMaxSec: o.tunnelMaxSec };
    try {
      await keys.push(instanceId, o.osUser, k.publicKey);
      if (target) {
        // Opened here, before ssh: a refused handshake is a protocol error with AWS's own reason.
        bridge = await tunnels.open(target, k.dir, instanceId).catch((err: unknown) => {
          if (!(err instanceof TunnelError)) throw err;
          const d = diagnoseSshExit({ code: 255, signal: null, tail: Buffer.from(`${TAG}[${err.kind}]: ${err.message}\n`), ranMs: 0 }, diag);
          if (d && d.reason !== "session_expired") throw new TerminalUnavailableError(d.reason, d.message);
          throw new Error(err.message);
        });
        relay = { ...relay!, socket: bridge.socketPath };
      }
      args = buildSshArgs({
        sshBin: sshPath,
        awsCli: o.awsCli,
        instanceId,
        osUser: o.osUser,
        container,
        region: o.region,
        keyFile: k.keyFile,
        knownHostsFile: hostKey ? k.knownHostsFile : null,
        hostKeyType: hostKey ? type! : null,
        connectTimeoutSec: o.connectTimeoutSec,
        keepaliveSec: o.keepaliveSec,
        keepaliveCount: o.keepaliveCount,
        tunnelMaxSec: o.tunnelMaxSec,
        extraOptions: o.sshOptions,
        native: bridge ? relay : null,
        ...(ctx.command ? { command: ctx.command, pty: ctx.pty !== false } : {}),
      });
    } catch (err) {
      await bridge?.close();
      await k.remove();
      throw err;
    }
    // Native: ssh and the relay get no AWS credentials at all (the worker holds the tunnel).
    const base = native ? { ...(o.childEnv.HOME ? { HOME: o.childEnv.HOME } : {}) } : o.childEnv;
    const env: Record<string, string> = {
      ...base,
      PATH: path,
      TERM: ctx.term ?? "xterm-256color",
      LANG: "C.UTF-8",
      ...(native
        ? {}
        : {
            AWS_REGION: o.region,
            AWS_DEFAULT_REGION: o.region,
            // aws-cli v2 honours per-service endpoint overrides (tests point it at the local fake).
            ...(o.ec2Endpoint ? { AWS_ENDPOINT_URL_EC2: o.ec2Endpoint } : {}),
          }),
    };
    log?.debug({ session_id: ctx.sessionId, instance_id: instanceId, pinned: Boolean(hostKey), tunnel: native ? "native" : "aws-cli", endpoint: target?.endpoint.id }, "ssh through EIC");
    const b = bridge;
    return {
      file: sshPath,
      args,
      env,
      cwd: o.keyDir,
      audit: { instanceId, osUser: o.osUser },
      cleanup: async () => {
        await b?.close();
        await k.remove();
      },
      diagnoseExit: (exit) => {
        // What ended the worker-held tunnel is known here: told to the diagnosis as the proxy would say it.
        const e = b?.error();
        const tail = e ? Buffer.concat([exit.tail, Buffer.from(`\n${TAG}[${e.kind}]: ${e.message}\n`)]) : exit.tail;
        return diagnoseSshExit({ ...exit, tail }, diag);
      },
    };
  }

  return {
    name: "aws",
    create: (workspace, ctx) => provision(workspace, ctx, "create"),
    restart: (workspace, ctx) => provision(workspace, ctx, "restart"),
    destroy,
    terminalCommand,
    close() {
      ec2.destroy();
      keys.destroy();
    },
  };
}
