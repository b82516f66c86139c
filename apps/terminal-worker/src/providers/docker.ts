import { execFile } from "node:child_process";
import { UUID_RE, type Logger } from "@molecule/shared";
import { containerName } from "./container-name.ts";
import {
  CPUS_RE,
  checkImageTemplate,
  DEFAULT_CPUS,
  DEFAULT_DOCKER_NETWORK,
  DEFAULT_MEMORY,
  DEFAULT_PIDS_LIMIT,
  IMAGE_REF_RE,
  MEMORY_RE,
  NETWORK_RE,
  type TierLimits,
} from "./docker-settings.ts";
import { EXECUTABLE_RE, findExecutable } from "./executables.ts";
import {
  ProviderError,
  TerminalUnavailableError,
  type Provider,
  type ProvisionContext,
  type ShellCommand,
  type TerminalContext,
  type TerminalDiagnosis,
  type WorkspaceRow,
} from "./types.ts";

// The parsers' tests and the provider's callers import them from here too; they live in docker-settings.ts.
export { IMAGE_REF_RE, parseRuntimeImages, parseTierLimits, type TierLimits } from "./docker-settings.ts";

const DOC = "docs/deployment.md#the-docker-provider";

/** Its Linux bridge, so an operator's DOCKER-USER firewall rules can name it (15 characters at most). */
export const DEFAULT_DOCKER_BRIDGE = "molecule-ws0";
/**
 * Capabilities a workspace does not need, off docker's default set. NET_RAW: no raw or packet
 * sockets (no spoofing on the bridge, no hand-made frames to the host's 127.0.0.1); MKNOD: no
 * device nodes; AUDIT_WRITE: nothing into the host's audit log. What apt-get as root needs
 * (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, SETUID, SETGID, KILL) stays.
 */
export const DROPPED_CAPS = ["NET_RAW", "MKNOD", "AUDIT_WRITE"] as const;
/** Docker's predefined networks: host and bridge share the platform's, none has no shell network at all. */
const RESERVED_NETWORKS = new Set(["host", "bridge", "none", "default"]);
export const LABEL_NETWORK = "molecule.network";
export const LABEL_WORKSPACE = "molecule.workspace";
export const LABEL_ORG = "molecule.org";

export interface DockerProviderOptions {
  /** The docker CLI: a name looked up on PATH or an absolute path. */
  bin: string;
  /** Image of every runtime without an entry in `images`; `{runtime}` is replaced by the workspace runtime. */
  image: string;
  /** Runtime -> image. */
  images?: Partial<Record<string, string>>;
  /** The workspaces' network (DEFAULT_DOCKER_NETWORK when unset); created when missing, refused when it is not theirs alone. */
  network?: string;
  /** Outbound connectivity (true by default); false: an `--internal` network, no route out at all. */
  egress?: boolean;
  /** Tier -> resource limits; what a tier does not set comes from `defaultLimits`. */
  limits?: Record<number, TierLimits>;
  /** cpus and memory of tiers not listed (DEFAULT_CPUS, DEFAULT_MEMORY). */
  defaultLimits?: TierLimits;
  /** `--pids-limit` of every container (DEFAULT_PIDS_LIMIT). */
  pidsLimit?: number;
  /** Environment of the docker CLI: PATH, HOME, DOCKER_* (never the worker's whole env). */
  env: Record<string, string>;
  /** Per CLI call (inspect, run, start, rm, exec probes). */
  timeoutMs?: number;
  /** `docker pull` of a missing image. */
  pullTimeoutMs?: number;
  log?: Logger;
}

/** A failed docker CLI call: exit code or errno, and what it printed. */
export class DockerCliError extends Error {
  constructor(
    readonly args: string[],
    readonly code: number | string | null,
    readonly stderr: string,
    readonly timedOut: boolean,
  ) {
    super(`docker ${args[0] ?? ""} failed: ${firstLine(stderr) || (timedOut ? "timed out" : `exit ${code}`)}`);
    this.name = "DockerCliError";
  }
}

export type DockerFailure = "missing_cli" | "not_executable" | "timeout" | "daemon_unreachable" | "permission" | "not_found" | "name_conflict" | "not_running" | "other";

const DAEMON_DOWN = /Cannot connect to the Docker daemon|Is the docker daemon running|error during connect|dial unix [^:]+: connect: no such file/i;

/** What kind of failure a docker CLI error is (from errno, timeout or the daemon's message). */
export function classifyDockerError(err: unknown): DockerFailure {
  if (!(err instanceof DockerCliError)) return "other";
  if (err.code === "ENOENT") return "missing_cli";
  if (err.code === "EACCES") return "not_executable";
  if (err.timedOut) return "timeout";
  const s = err.stderr;
  if (/permission denied while trying to connect to the Docker daemon/i.test(s)) return "permission";
  if (DAEMON_DOWN.test(s)) return "daemon_unreachable";
  if (/Conflict\. The container name .* is already in use/i.test(s)) return "name_conflict";
  if (/No such (container|object|image|network)|network \S+ not found/i.test(s)) return "not_found";
  if (/is not running|is paused|is restarting/i.test(s)) return "not_running";
  return "other";
}

const CONTAINER_ID_RE = /^[0-9a-f]{12,64}$/;

function detailOf(err: unknown): string {
  return err instanceof DockerCliError ? firstLine(err.stderr) || err.message : String((err as Error)?.message ?? err);
}

function firstLine(s: string): string {
  const lines = s.split("\n").map((l) => l.trim()).filter(Boolean);
  // The daemon's reason, not the CLI's "Unable to find image ... locally" preface or its usage hint.
  const line = lines.find((l) => /error|denied|not found|unknown|invalid|failed/i.test(l)) ?? lines[0] ?? "";
  return line.replace(/^docker: /, "").slice(0, 300);
}

/**
 * A docker CLI failure as the user should read it. Daemon unreachable is transient:
 * a dockerd restart is brief and the provisioning queue retries with backoff (about two
 * minutes over 8 attempts), after which the workspace fails with this same message.
 * A missing CLI or a refused socket needs the operator: permanent.
 */
export function dockerProviderError(err: unknown, o: { bin: string; doing: string }): ProviderError {
  const kind = classifyDockerError(err);
  const detail = detailOf(err);
  switch (kind) {
    case "missing_cli":
      return new ProviderError(
        `the docker CLI "${o.bin}" is not installed on the terminal worker (not found on its PATH); install it (Debian: docker-ce-cli or docker.io) or set MOLECULE_DOCKER_BIN to its path, see ${DOC}`,
        false,
        "docker_missing",
      );
    case "not_executable":
      return new ProviderError(`the docker CLI "${o.bin}" is not executable by the terminal worker; check MOLECULE_DOCKER_BIN, see ${DOC}`, false, "docker_missing");
    case "permission":
      return new ProviderError(
        `the terminal worker may not use the Docker daemon socket (${detail}); run the worker as a member of the docker group or give it the socket, see ${DOC}`,
        false,
        "docker_permission",
      );
    case "daemon_unreachable":
      return new ProviderError(
        `the Docker daemon is not reachable from the terminal worker (${detail}); start dockerd, or give the worker its socket (/var/run/docker.sock) or DOCKER_HOST, see ${DOC}`,
        true,
        "docker_unreachable",
      );
    case "timeout":
      return new ProviderError(`docker did not answer while ${o.doing}; retrying`, true, "docker_timeout");
    default:
      return new ProviderError(`docker failed while ${o.doing}: ${detail}`, false, "docker_error");
  }
}

/** Registry trouble that a later attempt may not have: network, rate limits, registry 5xx. */
const PULL_TRANSIENT = /TLS handshake timeout|i\/o timeout|connection reset|connection refused|no such host|toomanyrequests|Too Many Requests|50[234] |Service Unavailable|Bad Gateway|request canceled|unexpected EOF/i;

export function pullProviderError(err: unknown, image: string, bin: string): ProviderError {
  const kind = classifyDockerError(err);
  if (kind !== "other" && kind !== "not_found") return dockerProviderError(err, { bin, doing: `pulling the workspace image ${image}` });
  const detail = detailOf(err);
  // Retried, but this is also the last attempt's message: an air-gapped host never gets there.
  if (PULL_TRANSIENT.test(detail)) {
    return new ProviderError(
      `the workspace image ${image} is not on the worker's Docker host and its registry cannot be reached (${detail}); load or build the image there (docker image ls ${image}) or set MOLECULE_DOCKER_IMAGE / MOLECULE_DOCKER_IMAGES to one that is, see ${DOC}`,
      true,
      "docker_pull",
    );
  }
  return new ProviderError(
    `cannot pull the workspace image ${image}: ${detail}. Check MOLECULE_DOCKER_IMAGE / MOLECULE_DOCKER_IMAGES (and docker login on the worker host for a private registry)`,
    false,
    "docker_image",
  );
}

/** One container, as `docker inspect` reports it. */
export interface ContainerInfo {
  id: string;
  status: string;
  running: boolean;
  exitCode: number | null;
  labels: Record<string, string>;
  user: string;
  /** HostConfig.NetworkMode and SecurityOpt: what tells a hardened workspace container from an older one. */
  networkMode: string;
  securityOpt: string[];
}

export function parseInspect(stdout: string): ContainerInfo | null {
  const arr = JSON.parse(stdout) as unknown;
  const c = (Array.isArray(arr) ? arr[0] : null) as
    | {
        Id?: string;
        State?: { Status?: string; Running?: boolean; ExitCode?: number };
        Config?: { Labels?: Record<string, string> | null; User?: string };
        HostConfig?: { NetworkMode?: string; SecurityOpt?: string[] | null };
      }
    | null
    | undefined;
  if (!c?.Id) return null;
  return {
    id: c.Id,
    status: c.State?.Status ?? "unknown",
    running: c.State?.Running === true && c.State?.Status === "running",
    exitCode: typeof c.State?.ExitCode === "number" ? c.State.ExitCode : null,
    labels: c.Config?.Labels ?? {},
    user: c.Config?.User ?? "",
    networkMode: c.HostConfig?.NetworkMode ?? "",
    securityOpt: c.HostConfig?.SecurityOpt ?? [],
  };
}

/** One network, as `docker network inspect` reports it. */
export interface NetworkInfo {
  name: string;
  driver: string;
  internal: boolean;
  options: Record<string, string>;
  labels: Record<string, string>;
  /** Names of the containers attached to it. */
  containers: string[];
}

export function parseNetworkInspect(stdout: string): NetworkInfo | null {
  const arr = JSON.parse(stdout) as unknown;
  const n = (Array.isArray(arr) ? arr[0] : null) as
    | {
        Name?: string;
        Driver?: string;
        Internal?: boolean;
        Options?: Record<string, string> | null;
        Labels?: Record<string, string> | null;
        Containers?: Record<string, { Name?: string }> | null;
      }
    | null
    | undefined;
  if (!n?.Name) return null;
  return {
    name: n.Name,
    driver: n.Driver ?? "",
    internal: n.Internal === true,
    options: n.Options ?? {},
    labels: n.Labels ?? {},
    containers: Object.values(n.Containers ?? {}).map((c) => c.Name ?? ""),
  };
}

const WORKSPACE_CONTAINER_RE = /^ws-[0-9a-f]{8}-[0-9a-f]{3}$/;

/**
 * Why a network may not carry workspaces, or null when it may: a bridge of their own with
 * inter-container traffic off, nothing else attached (the platform's containers, the compose
 * network), and no route out when egress is off.
 */
export function networkProblem(n: NetworkInfo, egress: boolean): string | null {
  if (n.driver !== "bridge") return `it is a ${n.driver || "unknown"} network, not a bridge`;
  const compose = n.labels["com.docker.compose.network"];
  if (compose !== undefined) return `it is the compose network "${compose}" of project "${n.labels["com.docker.compose.project"] ?? "?"}"`;
  if (n.options["com.docker.network.bridge.enable_icc"] !== "false") return "containers on it can reach each other (com.docker.network.bridge.enable_icc is not false)";
  const others = n.containers.filter((c) => !WORKSPACE_CONTAINER_RE.test(c));
  if (others.length > 0) return `containers that are not workspaces are on it (${others.slice(0, 3).join(", ")})`;
  if (!egress && !n.internal) return "MOLECULE_DOCKER_EGRESS is off but the network is not --internal";
  return null;
}

/** The shell's environment inside the container, after TERM (values validated by the caller). */
export function execArgs(i: { workspaceId: string; sessionId: string; container: string; shell: string; command?: string[]; pty?: boolean; term?: string }): string[] {
  return [
    // An exec session without a PTY: -i alone, so stdout and stderr stay apart.
    "exec", i.command && i.pty === false ? "-i" : "-it",
    "-e", `TERM=${i.term ?? "xterm-256color"}`,
    "-e", `MOLECULE_WS_ID=${i.workspaceId}`,
    "-e", `MOLECULE_SESSION_ID=${i.sessionId}`,
    // An exec command is docker's argv (the container's Cmd array): no shell parses it.
    i.container, ...(i.command ?? [i.shell]),
  ];
}

/**
 * Sends SIGHUP to every process in the container that belongs to the session
 * ($1), as a terminal hang-up would: processes a `docker exec` started outlive the
 * CLI, so killing the CLI's process tree alone would leave the shell running in
 * the container. `nohup` jobs survive, as they do after an ssh hang-up. The session
 * id is an argument, never part of the script.
 */
export const HANGUP_SCRIPT =
  'for p in /proc/[0-9]*; do tr "\\0" "\\n" < "$p/environ" 2>/dev/null | grep -qxF "MOLECULE_SESSION_ID=$1" && kill -HUP "${p#/proc/}" 2>/dev/null; done; true';
/** Answers 0 when the image has bash, 1 when it has only sh. */
export const BASH_PROBE = ["/bin/sh", "-c", "test -x /bin/bash"];

/** An exit of `docker exec` that means the shell never started, as a protocol error. */
export function diagnoseDockerExit(exit: { code: number; tail: Buffer; ranMs: number }, container: string, shell: string): TerminalDiagnosis | null {
  if (exit.code === 0 || exit.ranMs > 10_000) return null;
  const text = exit.tail.toString("utf8");
  if (DAEMON_DOWN.test(text)) return { reason: "not_ready", message: `the Docker daemon is not reachable from the terminal worker; see ${DOC}` };
  if (/Error response from daemon: (No such container|container [0-9a-f]+ is not running|Container [^\s]+ is (not running|paused|restarting))/i.test(text)) {
    return { reason: "not_ready", message: `the workspace container ${container} is not running; restart the workspace` };
  }
  if (/OCI runtime exec failed|executable file not found|no such file or directory/i.test(text) && text.includes(shell)) {
    return { reason: "not_ready", message: `the workspace image has no ${shell}` };
  }
  return null;
}

function checkUuid(v: string, what: string): string {
  if (!UUID_RE.test(v)) throw new ProviderError(`invalid ${what} ${JSON.stringify(v)}`, false, "invalid_id");
  return v;
}

/**
 * One container per workspace (`ws-<first 12 of the id>`, labelled with the
 * workspace and org), running `sleep infinity` under docker's init; the Terminal is
 * `docker exec -it <container> /bin/bash` in a PTY. Every value that reaches an argv
 * is checked against a strict pattern first; the CLI runs through execFile only.
 */
export function createDockerProvider(o: DockerProviderOptions): Provider {
  if (!EXECUTABLE_RE.test(o.bin)) throw new Error(`invalid docker CLI path ${JSON.stringify(o.bin)}`);
  checkImageTemplate(o.image);
  for (const img of Object.values(o.images ?? {})) if (img) checkImageTemplate(img);
  const network = o.network ?? DEFAULT_DOCKER_NETWORK;
  if (!NETWORK_RE.test(network)) throw new Error(`invalid docker network ${JSON.stringify(network)}`);
  if (RESERVED_NETWORKS.has(network)) throw new Error(`docker network "${network}" is shared with the host or other containers; workspaces need a network of their own (e.g. ${DEFAULT_DOCKER_NETWORK})`);
  const egress = o.egress ?? true;
  const pidsLimit = o.pidsLimit ?? DEFAULT_PIDS_LIMIT;
  if (!Number.isInteger(pidsLimit) || pidsLimit < 1) throw new Error(`invalid pids limit ${pidsLimit}`);
  const defaults = { cpus: o.defaultLimits?.cpus ?? DEFAULT_CPUS, memory: o.defaultLimits?.memory ?? DEFAULT_MEMORY };
  if (!CPUS_RE.test(defaults.cpus) || Number(defaults.cpus) <= 0) throw new Error(`invalid default CPU count ${JSON.stringify(defaults.cpus)}`);
  if (!MEMORY_RE.test(defaults.memory)) throw new Error(`invalid default memory size ${JSON.stringify(defaults.memory)}`);
  const timeoutMs = o.timeoutMs ?? 60_000;
  const pullTimeoutMs = o.pullTimeoutMs ?? 240_000;
  const bin = o.bin;
  // The shell each container offers, per container id (found once per container and worker).
  const shells = new Map<string, string>();
  let binPath: Promise<string | null> | null = null;

  function cli(args: string[], ms = timeoutMs): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(bin, args, { env: o.env, timeout: ms, killSignal: "SIGKILL", maxBuffer: 8 << 20, encoding: "utf8" }, (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const e = err as NodeJS.ErrnoException & { killed?: boolean };
        const code = typeof e.code === "number" || typeof e.code === "string" ? e.code : null;
        reject(new DockerCliError(args, code, String(stderr ?? ""), e.killed === true && code !== "ENOENT"));
      });
    });
  }

  async function inspect(name: string): Promise<ContainerInfo | null> {
    try {
      return parseInspect(await cli(["inspect", "--type", "container", name]));
    } catch (err) {
      if (classifyDockerError(err) === "not_found") return null;
      throw err;
    }
  }

  function imageFor(workspace: WorkspaceRow): string {
    const template = o.images?.[workspace.runtime] ?? o.image;
    const image = template.replaceAll("{runtime}", workspace.runtime);
    if (!IMAGE_REF_RE.test(image)) throw new ProviderError(`invalid workspace image ${JSON.stringify(image)} for runtime ${workspace.runtime}`, false, "docker_image");
    return image;
  }

  function runArgs(workspace: WorkspaceRow, name: string, image: string): string[] {
    const id = checkUuid(workspace.id, "workspace id");
    const org = checkUuid(workspace.orgId, "org id");
    const tier = o.limits?.[workspace.tier] ?? {};
    const cpus = tier.cpus ?? defaults.cpus;
    const memory = tier.memory ?? defaults.memory;
    return [
      "run", "-d",
      "--name", name,
      "--label", `${LABEL_WORKSPACE}=${id}`,
      "--label", `${LABEL_ORG}=${org}`,
      "--hostname", name,
      "-e", `MOLECULE_WS_ID=${id}`,
      // docker's init as PID 1 reaps what exec'd shells leave behind (sleep would not).
      "--init",
      // The workspace comes back after a daemon or host restart.
      "--restart", "unless-stopped",
      // The tenant boundary: a network of its own, no privilege gained through exec (setuid,
      // file capabilities), fewer capabilities, bounded processes, memory and CPU. Never a
      // mount, the socket, --privileged or a host namespace.
      "--network", network,
      "--security-opt", "no-new-privileges",
      ...DROPPED_CAPS.flatMap((c) => ["--cap-drop", c]),
      "--pids-limit", String(pidsLimit),
      "--memory", memory,
      // Equal to --memory: no swap on top (docker's default would double it).
      "--memory-swap", memory,
      "--cpus", cpus,
      image,
      "sleep", "infinity",
    ];
  }

  async function ensureImage(image: string, ctx?: ProvisionContext): Promise<void> {
    try {
      await cli(["image", "inspect", "--format", "{{.Id}}", image]);
      return;
    } catch (err) {
      if (classifyDockerError(err) !== "not_found") throw dockerProviderError(err, { bin, doing: `looking up the image ${image}` });
    }
    ctx?.step?.("pulling_image");
    o.log?.info({ image }, "pulling the workspace image");
    await cli(["pull", "--quiet", image], pullTimeoutMs).catch((err) => {
      throw pullProviderError(err, image, bin);
    });
  }

  async function inspectNetwork(): Promise<NetworkInfo | null> {
    try {
      return parseNetworkInspect(await cli(["network", "inspect", network]));
    } catch (err) {
      if (classifyDockerError(err) === "not_found") return null;
      throw err;
    }
  }

  /**
   * The workspaces' network, created when missing and checked on every provisioning: an
   * operator's later `docker network connect` of a platform container must not go unnoticed.
   */
  async function ensureNetwork(): Promise<void> {
    let n = await inspectNetwork();
    if (!n) {
      o.log?.info({ network, egress }, "creating the workspace network");
      try {
        await cli([
          "network", "create",
          "--driver", "bridge",
          "-o", "com.docker.network.bridge.enable_icc=false",
          ...(network === DEFAULT_DOCKER_NETWORK ? ["-o", `com.docker.network.bridge.name=${DEFAULT_DOCKER_BRIDGE}`] : []),
          ...(egress ? [] : ["--internal"]),
          "--label", `${LABEL_NETWORK}=workspaces`,
          network,
        ]);
      } catch (err) {
        // Another worker made it meanwhile: checked below like any existing network.
        if (!(err instanceof DockerCliError && /already exists/i.test(err.stderr))) throw err;
      }
      n = await inspectNetwork();
      if (!n) throw new ProviderError(`the docker network ${network} disappeared while being created; retrying`, true, "docker_network");
    }
    const problem = networkProblem(n, egress);
    if (problem) {
      throw new ProviderError(
        `the docker network ${network} (MOLECULE_DOCKER_NETWORK) may not carry workspaces: ${problem}. Unset MOLECULE_DOCKER_NETWORK (the worker then creates ${DEFAULT_DOCKER_NETWORK}) or name a network only workspaces use, see ${DOC}`,
        false,
        "docker_network",
      );
    }
  }

  async function create(workspace: WorkspaceRow, ctx: ProvisionContext): Promise<{ instanceId: string }> {
    const id = checkUuid(workspace.id, "workspace id");
    checkUuid(workspace.orgId, "org id");
    const name = containerName(id);
    const image = imageFor(workspace);
    const step = async <T>(doing: string, fn: () => Promise<T>): Promise<T> => {
      try {
        return await fn();
      } catch (err) {
        throw err instanceof ProviderError ? err : dockerProviderError(err, { bin, doing });
      }
    };
    let recorded: string | null = null;
    let c = await step(`looking for the container ${name}`, () => inspect(name));
    if (c && c.labels[LABEL_WORKSPACE] !== id) {
      throw new ProviderError(`a container named ${name} exists but does not belong to this workspace (label ${LABEL_WORKSPACE}=${c.labels[LABEL_WORKSPACE] ?? "none"}); remove it`, false, "docker_conflict");
    }
    if (c && (c.status === "dead" || c.status === "removing")) {
      await step(`removing the dead container ${name}`, () => cli(["rm", "-f", name]));
      c = null;
    }
    await step(`checking the workspace network ${network}`, ensureNetwork);
    if (c && !hardened(c)) {
      // Made before workspaces had a network of their own: never adopted, since provisioning
      // (a new workspace or a restart) has nothing in it to keep.
      o.log?.warn({ container: name, network: c.networkMode }, "replacing a workspace container outside the workspace network");
      await step(`removing the container ${name}`, () => cli(["rm", "-f", name]));
      c = null;
    }
    if (!c) {
      await ensureImage(image, ctx);
      ctx.step?.("starting_container");
      let out = "";
      try {
        out = await cli(runArgs(workspace, name, image));
      } catch (err) {
        const kind = classifyDockerError(err);
        // name_conflict: another attempt of this job made it meanwhile; adopted below.
        if (kind === "other") throw new ProviderError(`docker could not start the workspace container from ${image}: ${detailOf(err)}`, false, "docker_run");
        if (kind !== "name_conflict") throw dockerProviderError(err, { bin, doing: `starting the container ${name}` });
      }
      const cid = out.trim().split("\n").pop() ?? "";
      if (CONTAINER_ID_RE.test(cid)) {
        await ctx.recordInstanceId(cid);
        recorded = cid;
      }
      c = await step(`looking for the container ${name}`, () => inspect(name));
      if (!c) throw new ProviderError(`the container ${name} disappeared while starting; retrying`, true, "docker_lost");
    } else {
      o.log?.info({ container: name, status: c.status }, "adopting the existing workspace container");
    }
    if (!c.running) {
      await step(`starting the container ${name}`, () => cli([c!.status === "paused" ? "unpause" : "start", name]));
      c = await step(`looking for the container ${name}`, () => inspect(name));
      if (!c) throw new ProviderError(`the container ${name} disappeared while starting; retrying`, true, "docker_lost");
    }
    if (c.id !== recorded) await ctx.recordInstanceId(c.id);
    if (!c.running) {
      throw new ProviderError(
        `the workspace container ${name} stopped right after starting (${c.status}, exit code ${c.exitCode ?? "?"}); the image ${image} must be able to run "sleep infinity"`,
        false,
        "docker_exited",
      );
    }
    return { instanceId: c.id };
  }

  function hardened(c: ContainerInfo): boolean {
    return c.networkMode === network && c.securityOpt.includes("no-new-privileges");
  }

  async function destroy(workspace: WorkspaceRow): Promise<void> {
    const name = containerName(checkUuid(workspace.id, "workspace id"));
    try {
      await cli(["rm", "-f", name]);
    } catch (err) {
      // Already gone is what we want (older CLIs say so even with -f).
      if (classifyDockerError(err) === "not_found") return;
      throw dockerProviderError(err, { bin, doing: `removing the container ${name}` });
    }
  }

  async function shellOf(c: ContainerInfo, name: string): Promise<string> {
    const known = shells.get(c.id);
    if (known) return known;
    let shell = "/bin/bash";
    try {
      await cli(["exec", name, ...BASH_PROBE], 15_000);
    } catch (err) {
      // Exit 1: sh answered, bash is missing. Anything else: try bash and let its error show.
      if (err instanceof DockerCliError && err.code === 1 && !err.stderr.trim()) shell = "/bin/sh";
      else if (classifyDockerError(err) !== "other") throw err;
    }
    if (shells.size >= 10_000) shells.delete(shells.keys().next().value!);
    shells.set(c.id, shell);
    return shell;
  }

  async function terminalCommand(ctx: TerminalContext): Promise<ShellCommand> {
    const id = checkUuid(ctx.workspaceId, "workspace id");
    const sid = checkUuid(ctx.sessionId, "session id");
    const name = containerName(id);
    let c: ContainerInfo | null;
    let shell: string;
    try {
      c = await inspect(name);
      if (!c) throw new TerminalUnavailableError("not_ready", `the workspace container ${name} does not exist (removed?); restart the workspace to recreate it`);
      if (c.labels[LABEL_WORKSPACE] !== id) throw new TerminalUnavailableError("not_ready", `the container ${name} does not belong to this workspace`);
      if (!c.running) throw new TerminalUnavailableError("not_ready", `the workspace container ${name} is ${c.status}; restart the workspace`);
      // A container from before the workspace network shares the daemon's default bridge: no shell there.
      if (!hardened(c)) throw new TerminalUnavailableError("not_ready", `the workspace container ${name} is not on the workspace network ${network}; restart the workspace to recreate it`);
      shell = await shellOf(c, name);
    } catch (err) {
      if (err instanceof TerminalUnavailableError) throw err;
      const kind = classifyDockerError(err);
      if (kind === "not_found" || kind === "not_running") throw new TerminalUnavailableError("not_ready", `the workspace container ${name} is not running; restart the workspace`);
      throw new Error(dockerProviderError(err, { bin, doing: "opening the terminal" }).message);
    }
    // node-pty needs the path: resolved once with the CLI's own PATH.
    binPath ??= findExecutable(bin, o.env.PATH ?? "/usr/local/bin:/usr/bin:/bin");
    const file = (await binPath) ?? bin;
    const container = name;
    const osUser = /^[a-z_][a-z0-9_-]{0,31}$/.test(c.user) ? c.user : c.user === "" ? "root" : null;
    return {
      file,
      args: execArgs({ workspaceId: id, sessionId: sid, container, shell, ...(ctx.command ? { command: ctx.command, pty: ctx.pty !== false } : {}), ...(ctx.term ? { term: ctx.term } : {}) }),
      env: { ...o.env },
      audit: { instanceId: c.id, osUser },
      diagnoseExit: (e) => diagnoseDockerExit(e, container, shell),
      cleanup: () => hangup(id, sid),
    };
  }

  /** The session's processes in its workspace's container get SIGHUP (HANGUP_SCRIPT); a container that is gone has none. */
  async function hangup(workspaceId: string, sessionId: string): Promise<void> {
    const container = containerName(checkUuid(workspaceId, "workspace id"));
    const sid = checkUuid(sessionId, "session id");
    try {
      await cli(["exec", container, "/bin/sh", "-c", HANGUP_SCRIPT, "molecule-hangup", sid], 15_000);
    } catch (err) {
      const kind = classifyDockerError(err);
      if (kind !== "not_found" && kind !== "not_running") throw err;
    }
  }

  return {
    name: "docker",
    create,
    // A restart gives the workspace a fresh container from its image.
    async restart(workspace, ctx) {
      await destroy(workspace);
      return create(workspace, ctx);
    },
    destroy,
    terminalCommand,
    hangup,
    // It inspects the container and probes its shell: nothing the session's claim should come first for.
    commandBeforeClaim: true,
  };
}
