/**
 * Outbound networking for a local sandbox (MOLECULE_SANDBOX_NETWORK=egress).
 *
 * The wrapper runs as the sandbox's unprivileged host uid, after setpriv and
 * before bwrap: pasta makes a user + network namespace, gives it a tap device and
 * maps the tenant's connections onto sockets of its own on the host. Before bwrap
 * runs, a constant script inside that namespace installs policy rules that make
 * every blocked destination unreachable. Rules, not routes: a route loses to any
 * more specific one (pasta copies the host's on-link subnet into the namespace),
 * a rule at a low preference is consulted before the main table whatever it holds.
 * bwrap then makes a nested user namespace, so root in the sandbox holds no
 * CAP_NET_ADMIN over this network namespace and cannot remove the rules.
 *
 * pasta opens /dev/net/tun as the sandbox uid: the device must be world-usable
 * (mode 0666, what udev sets on systemd distributions; a bare VM or container may
 * have 0600, and then egress is unavailable).
 */
import { spawnSync } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { isIPv4, isIPv6 } from "node:net";
import { networkInterfaces } from "node:os";

export interface EgressOptions {
  /** CIDRs the sandbox must not reach (validated; host addresses as /32 or /128). */
  blocked: string[];
  /** pasta executable, default "pasta". */
  pasta?: string;
  /** ip executable run inside the namespace, default "ip" (found through the PTY's PATH). */
  ip?: string;
}

/**
 * The resolver address inside the sandbox: pasta answers UDP port 53 on it from the
 * host's own resolver, so DNS works even when the host's resolver sits in a blocked
 * range (a VPC resolver in 10/8, systemd-resolved on loopback). It lies in
 * 169.254/16, which stays blocked for every other port and protocol.
 */
export const EGRESS_DNS = "169.254.0.53";
/** /etc/resolv.conf for an egress sandbox (the bwrap argv should bind it). */
export const EGRESS_RESOLV_CONF = `nameserver ${EGRESS_DNS}\noptions edns0\n`;

/** Never reachable from a sandbox, whatever the host looks like. */
export const ALWAYS_BLOCKED: readonly string[] = [
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "224.0.0.0/4",
  "240.0.0.0/4",
  "::/128",
  "::1/128",
  "::ffff:0:0/96",
  "fc00::/7",
  "fe80::/10",
  "ff00::/8",
];

const OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const IPV4_CIDR_RE = new RegExp(`^${OCTET}(?:\\.${OCTET}){3}/(?:3[0-2]|[12]?[0-9])$`);
const IPV6_CIDR_RE = /^[0-9a-f:]{2,39}\/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9])$/;

/** A CIDR in the only spellings the namespace script accepts; anything else throws. */
export function checkCidr(cidr: string): string {
  const c = cidr.toLowerCase();
  if (IPV4_CIDR_RE.test(c)) return c;
  const slash = c.indexOf("/");
  if (IPV6_CIDR_RE.test(c) && isIPv6(c.slice(0, slash))) return `${bigToV6(v6ToBig(c.slice(0, slash)))}${c.slice(slash)}`;
  throw new Error(`invalid CIDR ${JSON.stringify(cidr)}`);
}

function v4ToInt(a: string): number {
  return a.split(".").reduce((n, o) => n * 256 + Number(o), 0);
}
function intToV4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}
function v6ToBig(a: string): bigint {
  const [head = "", tail = ""] = a.split("::");
  const h = head ? head.split(":") : [];
  const t = a.includes("::") ? (tail ? tail.split(":") : []) : [];
  const groups = a.includes("::") ? [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t] : h;
  return groups.reduce((n, g) => (n << 16n) | BigInt(parseInt(g || "0", 16)), 0n);
}
/** RFC 5952 text (longest run of zero groups as "::"), so equal prefixes compare equal. */
function bigToV6(n: bigint): string {
  const g: string[] = [];
  for (let i = 7; i >= 0; i--) g.push(((n >> BigInt(i * 16)) & 0xffffn).toString(16));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && g[j] === "0") j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  if (best < 0) return g.join(":");
  return `${g.slice(0, best).join(":")}::${g.slice(best + bestLen).join(":")}`;
}

/** The network of an interface address ("192.0.2.2/24" → "192.0.2.0/24"). */
export function networkOf(cidr: string): string {
  const [addr = "", bitsText = ""] = checkCidr(cidr).split("/");
  const bits = Number(bitsText);
  if (isIPv4(addr)) {
    const size = 2 ** (32 - bits);
    return `${intToV4(Math.floor(v4ToInt(addr) / size) * size)}/${bits}`;
  }
  const mask = bits === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - bits)) - 1n);
  return `${bigToV6(v6ToBig(addr) & mask)}/${bits}`;
}

/** The host's default gateways (IPv4 from /proc/net/route, IPv6 from /proc/net/ipv6_route). */
export function defaultGateways(): string[] {
  const out: string[] = [];
  try {
    for (const line of readFileSync("/proc/net/route", "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // Destination 0 = default; the gateway is little-endian hex.
      if (f[1] === "00000000" && f[2] && f[2] !== "00000000") {
        const n = parseInt(f[2], 16);
        out.push(`${n & 255}.${(n >>> 8) & 255}.${(n >>> 16) & 255}.${n >>> 24}/32`);
      }
    }
    for (const line of readFileSync("/proc/net/ipv6_route", "utf8").split("\n")) {
      const f = line.trim().split(/\s+/);
      if (f[0] === "0".repeat(32) && f[1] === "00" && f[4] && /^[0-9a-f]{32}$/.test(f[4]) && f[4] !== "0".repeat(32)) {
        out.push(`${bigToV6(BigInt(`0x${f[4]}`))}/128`);
      }
    }
  } catch (err) {
    // No procfs view of the routes (not Linux): the private ranges still cover most gateways.
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  return out;
}

/**
 * The default block list: private, loopback, link-local, multicast and reserved
 * ranges, every address of the host's own interfaces and the subnets they sit on
 * (pasta connects from the host: without this a tenant reaches every host service
 * bound to 0.0.0.0, and the host's neighbours, e.g. other nodes of the platform),
 * and the default gateways.
 */
export function defaultBlockedCidrs(): string[] {
  const out = new Set<string>(ALWAYS_BLOCKED);
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      const addr = a.address.toLowerCase().split("%")[0] ?? "";
      if (!a.cidr) continue;
      out.add(a.family === "IPv4" ? `${addr}/32` : `${addr}/128`);
      out.add(networkOf(`${addr}/${a.cidr.split("/")[1] ?? ""}`));
    }
  }
  for (const g of defaultGateways()) out.add(g);
  return [...out].map(checkCidr);
}

/**
 * Runs inside pasta's namespace as its root: installs the rules, then execs the
 * sandbox. Constant text; the CIDRs arrive as positional parameters (a count, then
 * the IPv4 ones; a count, then the IPv6 ones), already validated, so nothing
 * user-supplied is ever parsed as shell. One `ip -batch` per family (ip rule does
 * not infer the family from the prefix). pref 5: DNS to EGRESS_DNS (UDP 53 only)
 * takes the main table; pref 10: each blocked CIDR; pref 20: all of IPv6 (pasta
 * runs IPv4-only; loopback still works, the local table comes first at pref 0).
 * Any failure ends the shell before it starts: no sandbox without its rules.
 */
const NS_SCRIPT = `ipc=$1; shift
fail() { echo "molecule: sandbox egress setup failed" >&2; exit 70; }
b4="rule add pref 5 to ${EGRESS_DNS}/32 ipproto udp dport 53 lookup main
"
n=$1; shift
while [ "$n" -gt 0 ]; do b4="\${b4}rule add pref 10 to $1 unreachable
"; shift; n=$((n - 1)); done
b6="rule add pref 20 unreachable
"
n=$1; shift
while [ "$n" -gt 0 ]; do b6="\${b6}rule add pref 10 to $1 unreachable
"; shift; n=$((n - 1)); done
printf '%s' "$b4" | "$ipc" -4 -batch - || fail
printf '%s' "$b6" | "$ipc" -6 -batch - || fail
exec "$@"`;

/** Full argv: runs `inner` (the bwrap argv) inside a fresh netns with egress through pasta, with `blocked` CIDRs unreachable. */
export function egressArgv(inner: string[], o: EgressOptions): string[] {
  if (inner.length === 0) throw new Error("egressArgv: empty inner argv");
  const blocked = [...new Set(o.blocked.map(checkCidr))];
  const v4 = blocked.filter((c) => !c.includes(":"));
  const v6 = blocked.filter((c) => c.includes(":"));
  return [
    o.pasta ?? "pasta",
    // Foreground: from a TTY pasta would otherwise daemonize and the PTY would see its shell exit.
    "-f", "-q", "--log-file", "/dev/null",
    "--config-net", "-4",
    // The gateway address must not lead to the host's loopback.
    "--no-map-gw",
    // No port forwarding either way: "auto" would bind the tenant's listening ports on
    // the host, and map the namespace's loopback ports onto the host's (Redis, PostgreSQL).
    "-t", "none", "-u", "none", "-T", "none", "-U", "none",
    // Queries to EGRESS_DNS go to the first nameserver of the host's /etc/resolv.conf
    // (pasta 2023-03 ignores that resolver once --dns is given: do not add it).
    "--dns-forward", EGRESS_DNS,
    "--",
    "/bin/sh", "-c", NS_SCRIPT, "sh", o.ip ?? "ip",
    String(v4.length), ...v4, String(v6.length), ...v6,
    ...inner,
  ];
}

/** /dev/net/tun openable by a non-root uid that neither owns the device nor is in its group. */
function tunUsableBy(uid: number): boolean {
  try {
    const st = statSync("/dev/net/tun");
    return uid === 0 || uid === st.uid || (st.mode & 0o006) === 0o006;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

/**
 * Runs the probe in a session of its own and signals that whole group when it ends:
 * when pasta fails after forking (e.g. no tun device), its namespace-side process
 * is left waiting forever, and the probe must not leave it behind.
 */
const PROBE_SCRIPT = `trap '' TERM; "$@"; s=$?; kill -TERM 0; exit $s`;

let probed: boolean | undefined;
/**
 * pasta installed and able to start here (probe once, cached). As root the probe
 * runs as `probeUid` (default nobody) through setpriv, as the sandbox will: pasta
 * needs /dev/net/tun usable by that uid. A worker configured for egress should
 * refuse to start when this is false, rather than start shells that fail.
 */
export function egressAvailable(probeUid = 65534, pasta = "pasta"): boolean {
  if (probed === undefined) {
    const root = process.getuid?.() === 0;
    if (!tunUsableBy(root ? probeUid : (process.getuid?.() ?? probeUid))) {
      probed = false;
      return probed;
    }
    const argv = egressArgv(["true"], { blocked: ["10.0.0.0/8"], pasta });
    const full = root
      ? ["setpriv", `--reuid=${probeUid}`, `--regid=${probeUid}`, "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--", ...argv]
      : argv;
    const r = spawnSync("setsid", ["-w", "/bin/sh", "-c", PROBE_SCRIPT, "sh", ...full], {
      stdio: "ignore",
      timeout: 5000,
      env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" },
    });
    probed = r.status === 0;
  }
  return probed;
}
