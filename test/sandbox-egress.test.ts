/**
 * The egress sandbox from inside: a real pasta, bwrap and unprivileged uid, against
 * test hosts of our own in network namespaces (root only). "inet" at 198.18.0.2
 * (the benchmarking range, standing in for the internet) and "priv" at 10.250.0.2
 * (an internal service). Both hang off point-to-point veths with /32 addresses, so
 * the host's own addresses on them are single hosts, not subnets that would cover
 * the test hosts.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { accessSync, constants, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer, type Server } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cmdlineOf, processAlive } from "./helpers/procs.ts";
import { defaultBlockedCidrs, EGRESS_DNS, egressArgv } from "../apps/terminal-worker/src/providers/sandbox-egress.ts";

const SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const UID = 200123;
const has = (bin: string) => spawnSync("sh", ["-c", 'command -v "$1"', "sh", bin], { stdio: "ignore", env: { PATH: SYSTEM_PATH } }).status === 0;
const usable = process.getuid?.() === 0 && ["pasta", "bwrap", "ip", "setpriv", "unshare", "socat"].every(has);

const tag = `${process.pid % 1_000_000}`;
const NS_INET = `molt-${tag}-inet`;
const NS_PRIV = `molt-${tag}-priv`;
const hosts = [
  { ns: NS_INET, hostIf: `mi${tag}a`, nsIf: `mi${tag}b`, hostAddr: "198.18.0.1", nsAddr: "198.18.0.2" },
  { ns: NS_PRIV, hostIf: `mp${tag}a`, nsIf: `mp${tag}b`, hostAddr: "10.250.0.1", nsAddr: "10.250.0.2" },
];

function run(argv: string[]): void {
  const [file = "", ...args] = argv;
  const r = spawnSync(file, args, { encoding: "utf8", timeout: 10_000, env: { PATH: SYSTEM_PATH } });
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.error?.message ?? r.stderr}`);
}

/** A node server inside a netns: TCP answers `banner`, UDP (if asked) echoes "dns:" + datagram. */
function nsServer(ns: string, addr: string, banner: string, udp: boolean): Promise<ChildProcess> {
  const code = `
    const net = require("node:net"), dgram = require("node:dgram");
    let n = ${udp ? 2 : 1};
    const ready = () => { if (--n === 0) process.stdout.write("ready\\n"); };
    net.createServer((s) => s.end(${JSON.stringify(`${banner}\n`)})).listen(8080, ${JSON.stringify(addr)}, ready);
    if (${udp}) { const u = dgram.createSocket("udp4"); u.on("message", (m, r) => u.send("dns:" + m, r.port, r.address)); u.bind(53, ${JSON.stringify(addr)}, ready); }
    process.stdin.on("end", () => process.exit(0)); process.stdin.resume();`;
  const child = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", code], { stdio: ["pipe", "pipe", "inherit"], env: { PATH: SYSTEM_PATH } });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server in ${ns} did not start`)), 10_000);
    child.stdout.on("data", (d: Buffer) => {
      if (d.toString().includes("ready")) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.on("exit", (c) => reject(new Error(`server in ${ns} exited ${c}`)));
  });
}

const ptyModule = createRequire(join(import.meta.dirname, "../apps/terminal-worker/package.json")).resolve("node-pty");

/** Waits for `cond`, polling, at most `ms`. */
async function until(cond: () => boolean, ms: number, why: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(why());
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Live processes of the sandbox uid (pasta, bwrap, the shell). */
function uidProcesses(): string[] {
  const out: string[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e) || !processAlive(Number(e))) continue;
    try {
      // Status, not the owner of /proc/<pid>: pasta makes itself non-dumpable, which shows that directory as root's.
      const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${e}/status`, "utf8"))?.[1];
      if (uid === String(UID)) out.push(`${e} ${cmdlineOf(Number(e)).slice(0, 60)}`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  return out;
}

const servers: ChildProcess[] = [];
let hostServer: Server | undefined;
let hostPort = 0;
let fixDir: string | undefined;

/**
 * The sandbox runs in a private mount namespace: there, /etc/resolv.conf names the
 * test host (pasta forwards the sandbox's DNS to the host's first resolver, and the
 * test must not query this machine's real one), and, when the host's /dev/net/tun
 * is 0600 (this VM; hosts with udev have 0666), a 0666 node of the same device
 * sits on it. The machine itself is left unchanged.
 */
function sandboxPrefix(): string[] {
  if (!fixDir) {
    fixDir = mkdtempSync(join(tmpdir(), "molt-egress-"));
    writeFileSync(join(fixDir, "resolv.conf"), "nameserver 198.18.0.2\n");
    if ((statSync("/dev/net/tun").mode & 0o006) !== 0o006) run(["mknod", "-m", "0666", join(fixDir, "tun"), "c", "10", "200"]);
  }
  const tun = existsSync(join(fixDir, "tun")) ? ' && mount --bind "$0/tun" /dev/net/tun' : "";
  return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", `mount --bind "$0/resolv.conf" /etc/resolv.conf${tun} && exec "$@"`, fixDir];
}

/** Runs `script` (bash) in the egress sandbox as root-in-bwrap over an unprivileged host uid; its stdout. */
function inSandbox(script: string, blocked: string[], ip?: string): Promise<{ code: number | null; out: string; ms: number }> {
  const inner = ["bwrap", "--unshare-user", "--uid", "0", "--gid", "0", "--unshare-pid", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "bash", "-c", script];
  const argv = [
    ...sandboxPrefix(),
    "setpriv", `--reuid=${UID}`, `--regid=${UID}`, "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--",
    ...egressArgv(inner, { blocked, ...(ip ? { ip } : {}) }),
  ];
  const [file = "", ...args] = argv;
  const started = Date.now();
  const child = spawn(file, args, { cwd: "/", stdio: ["ignore", "pipe", "pipe"], env: { PATH: SYSTEM_PATH } });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  return new Promise((resolve) => {
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code !== 0) out += `\n[stderr] ${err}`;
      resolve({ code, out, ms: Date.now() - started });
    });
  });
}

/** One line per probe: "name ok <reply>" or "name blocked". Bounded by `timeout`. */
function tcpProbe(name: string, addr: string, port: number): string {
  return `if r=$(timeout 3 bash -c 'exec 3<>/dev/tcp/${addr}/${port} && head -n1 <&3' 2>/dev/null) && [ -n "$r" ]; then echo "${name} ok $r"; else echo "${name} blocked"; fi`;
}
const parse = (out: string) => new Map(out.split("\n").filter((l) => l.includes(" ")).map((l) => [l.slice(0, l.indexOf(" ")), l.slice(l.indexOf(" ") + 1)]));

function hostIpv4(): string {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (name.startsWith("mi") || name.startsWith("mp")) continue;
    const a = addrs?.find((x) => x.family === "IPv4" && !x.internal);
    if (a) return a.address;
  }
  throw new Error("no non-loopback IPv4 address on this host");
}

function cleanup(): void {
  for (const s of servers) s.kill("SIGKILL");
  for (const h of hosts) {
    spawnSync("ip", ["netns", "del", h.ns], { stdio: "ignore", timeout: 10_000, env: { PATH: SYSTEM_PATH } });
    spawnSync("ip", ["link", "del", h.hostIf], { stdio: "ignore", timeout: 10_000, env: { PATH: SYSTEM_PATH } });
  }
  hostServer?.close();
  if (fixDir) rmSync(fixDir, { recursive: true, force: true });
}

// In CI (root, the tools installed by ensure-deps) nothing is skipped: a missing tool fails the run.
describe.skipIf(!usable && process.env.CI !== "true")("egress sandbox (pasta) against test hosts", () => {
  beforeAll(async () => {
    accessSync("/dev/net/tun", constants.F_OK);
    for (const h of hosts) {
      run(["ip", "netns", "add", h.ns]);
      run(["ip", "link", "add", h.hostIf, "type", "veth", "peer", "name", h.nsIf]);
      run(["ip", "link", "set", h.nsIf, "netns", h.ns]);
      run(["ip", "addr", "add", h.hostAddr, "peer", `${h.nsAddr}/32`, "dev", h.hostIf]);
      run(["ip", "link", "set", h.hostIf, "up"]);
      run(["ip", "-n", h.ns, "addr", "add", h.nsAddr, "peer", `${h.hostAddr}/32`, "dev", h.nsIf]);
      run(["ip", "-n", h.ns, "link", "set", h.nsIf, "up"]);
      run(["ip", "-n", h.ns, "link", "set", "lo", "up"]);
    }
    servers.push(await nsServer(NS_INET, "198.18.0.2", "inet-ok", true));
    servers.push(await nsServer(NS_PRIV, "10.250.0.2", "priv-ok", false));
    // A host service bound to every address, as a careless one would be.
    hostServer = createServer((s) => s.end("host-ok\n"));
    await new Promise<void>((r) => hostServer!.listen(0, "0.0.0.0", r));
    const a = hostServer.address();
    hostPort = typeof a === "object" && a ? a.port : 0;
  });
  afterAll(cleanup);

  it("reaches the internet host and nothing of the host, private ranges or link-local; root inside cannot lift the rules", async () => {
    const blocked = defaultBlockedCidrs();
    // The veths exist now: their host-side addresses are in the list as single hosts.
    expect(blocked).toContain("198.18.0.1/32");
    expect(blocked).toContain("10.0.0.0/8");
    const gw = /^default via (\S+)/m.exec(spawnSync("ip", ["-4", "route", "show", "default"], { encoding: "utf8", env: { PATH: SYSTEM_PATH } }).stdout)?.[1];
    const script = [
      tcpProbe("inet", "198.18.0.2", 8080),
      tcpProbe("priv", "10.250.0.2", 8080),
      tcpProbe("redis", "127.0.0.1", 6379),
      tcpProbe("hostlo", "127.0.0.1", hostPort),
      tcpProbe("hostveth", "198.18.0.1", hostPort),
      tcpProbe("hostaddr", hostIpv4(), hostPort),
      tcpProbe("privveth", "10.250.0.1", hostPort),
      // Routing decisions only: nothing is ever sent to these addresses.
      `ip route get 169.254.169.254 >/dev/null 2>&1 && echo metadata routed || echo metadata unreachable`,
      gw ? `ip route get ${gw} >/dev/null 2>&1 && echo gateway routed || echo gateway unreachable` : "echo gateway unreachable",
      `ip route get ${EGRESS_DNS} ipproto tcp dport 80 >/dev/null 2>&1 && echo dnstcp80 routed || echo dnstcp80 unreachable`,
      `ip -6 route get 2001:db8::1 >/dev/null 2>&1 && echo v6 routed || echo v6 unreachable`,
      // DNS through pasta's forwarder, to the test host standing in for the resolver.
      `echo "dns $(printf q1 | timeout 3 socat -T2 - UDP:${EGRESS_DNS}:53 2>/dev/null)"`,
      // Root in the sandbox tries to lift the block.
      `echo "whoami $(id -u)"`,
      `ip rule del pref 10 2>/dev/null && echo ruledel done || echo ruledel denied`,
      `ip rule flush 2>/dev/null && echo ruleflush done || echo ruleflush denied`,
      `ip route add 10.250.0.2/32 dev "$(ip -o link show | awk -F': ' '$2 != "lo" {print $2; exit}')" 2>/dev/null && echo routeadd done || echo routeadd denied`,
      tcpProbe("privafter", "10.250.0.2", 8080),
    ].join("\n");
    const r = await inSandbox(script, blocked);
    const got = parse(r.out);
    expect(r.code, r.out).toBe(0);
    expect(got.get("inet"), r.out).toBe("ok inet-ok");
    expect(got.get("dns"), r.out).toBe("dns:q1");
    for (const k of ["priv", "redis", "hostlo", "hostveth", "hostaddr", "privveth", "privafter"]) expect(got.get(k), `${k}\n${r.out}`).toBe("blocked");
    for (const k of ["metadata", "gateway", "dnstcp80", "v6"]) expect(got.get(k), `${k}\n${r.out}`).toBe("unreachable");
    expect(got.get("whoami")).toBe("0");
    for (const k of ["ruledel", "ruleflush", "routeadd"]) expect(got.get(k), `${k}\n${r.out}`).toBe("denied");
  });

  it("is what blocks them: with an empty block list the private host and the host's service answer", async () => {
    const r = await inSandbox([tcpProbe("priv", "10.250.0.2", 8080), tcpProbe("hostveth", "198.18.0.1", hostPort)].join("\n"), []);
    const got = parse(r.out);
    expect(got.get("priv"), r.out).toBe("ok priv-ok");
    expect(got.get("hostveth"), r.out).toBe("ok host-ok");
  });

  it("fails closed: no shell when the rules cannot be installed", async () => {
    const r = await inSandbox("echo started", ["10.0.0.0/8"], "/bin/false");
    expect(r.code).toBe(70);
    expect(r.out).not.toContain("started");
    expect(r.out).toContain("molecule: sandbox egress setup failed");
  });

  it("runs an interactive shell in a PTY, and every process of it ends when the worker holding the PTY is killed", async () => {
    const inner = ["bwrap", "--unshare-user", "--uid", "0", "--gid", "0", "--unshare-pid", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "bash", "--norc", "-i"];
    const argv = [...sandboxPrefix(), "setpriv", `--reuid=${UID}`, `--regid=${UID}`, "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--", ...egressArgv(inner, { blocked: defaultBlockedCidrs() })];
    // A stand-in worker: holds the PTY master, as the terminal-worker does, and is SIGKILLed.
    const code = `
      const pty = require(${JSON.stringify(ptyModule)});
      const [file, ...args] = JSON.parse(process.argv[1]);
      const p = pty.spawn(file, args, { cwd: "/", env: { PATH: ${JSON.stringify(SYSTEM_PATH)}, TERM: "xterm" } });
      p.onData((d) => process.stdout.write(d));
      p.write("echo out-$((6*7))\\r");`;
    const worker = spawn(process.execPath, ["-e", code, JSON.stringify(argv)], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    worker.stdout.on("data", (d: Buffer) => (out += d.toString()));
    try {
      await until(() => out.includes("out-42"), 15_000, () => `no echo: ${JSON.stringify(out)}`);
      expect(uidProcesses().length).toBeGreaterThan(0);
    } finally {
      worker.kill("SIGKILL");
    }
    const killed = Date.now();
    await until(() => uidProcesses().length === 0, 10_000, () => `left behind: ${uidProcesses().join(", ")}`);
    console.info(`sandbox gone ${Date.now() - killed} ms after its worker was killed`);
  });
});
