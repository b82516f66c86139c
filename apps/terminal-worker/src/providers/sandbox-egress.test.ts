import { networkInterfaces } from "node:os";
import { describe, expect, it } from "vitest";
import { ALWAYS_BLOCKED, checkCidr, defaultBlockedCidrs, EGRESS_DNS, egressArgv, networkOf } from "./sandbox-egress.ts";

describe("sandbox egress argv", () => {
  it("accepts only strict CIDRs: nothing else can reach the namespace script", () => {
    for (const bad of ["10.0.0.0/8; reboot", "$(id)", "10.0.0.0", "10.0.0.0/33", "256.0.0.0/8", "010.0.0.0/8", "10.0.0.0/8\n", " 10.0.0.0/8", "fe80::/129", "::ffff:1.2.3.4/128", "fe80::1%eth0/64", "x::/8", "-4/8"]) {
      expect(() => checkCidr(bad), bad).toThrow(/invalid CIDR/);
      expect(() => egressArgv(["true"], { blocked: [bad] }), bad).toThrow(/invalid CIDR/);
    }
    expect(checkCidr("10.0.0.0/8")).toBe("10.0.0.0/8");
    expect(checkCidr("FD00:0:0:0:0:0:0:1/128")).toBe("fd00::1/128");
  });

  it("keeps the script constant and passes the CIDRs as arguments, per family, deduplicated", () => {
    const a = egressArgv(["bwrap", "--", "bash"], { blocked: ["10.0.0.0/8", "fc00::/7", "0:0:0:0:0:0:0:1/128", "::1/128", "10.0.0.0/8"] });
    const script = a[a.indexOf("-c") + 1] ?? "";
    expect(script).not.toMatch(/10\.0\.0\.0|fc00/);
    const rest = a.slice(a.indexOf("-c") + 2);
    expect(rest).toEqual(["sh", "ip", "1", "10.0.0.0/8", "2", "fc00::/7", "::1/128", "bwrap", "--", "bash"]);
  });

  it("runs pasta in the foreground with no port forwarding either way, no gateway mapping, IPv4 only, DNS forwarded", () => {
    const a = egressArgv(["bwrap"], { blocked: [] });
    expect(a[0]).toBe("pasta");
    const opts = a.slice(0, a.indexOf("--"));
    expect(opts).toEqual(expect.arrayContaining(["-f", "--config-net", "--no-map-gw", "-4"]));
    for (const f of ["-t", "-u", "-T", "-U"]) expect(opts[opts.indexOf(f) + 1], f).toBe("none");
    expect(opts[opts.indexOf("--dns-forward") + 1]).toBe(EGRESS_DNS);
    expect(egressArgv(["bwrap"], { blocked: [], pasta: "/opt/pasta", ip: "/sbin/ip" }).slice(0, 1)).toEqual(["/opt/pasta"]);
    expect(() => egressArgv([], { blocked: [] })).toThrow();
  });

  it("computes interface networks", () => {
    expect(networkOf("192.0.2.77/24")).toBe("192.0.2.0/24");
    expect(networkOf("198.18.0.1/32")).toBe("198.18.0.1/32");
    expect(networkOf("10.1.2.3/0")).toBe("0.0.0.0/0");
    expect(networkOf("fd00::2/64")).toBe("fd00::/64");
    expect(networkOf("fe80::fc:ff:fe00:1/10")).toBe("fe80::/10");
  });

  it("blocks private, loopback and link-local ranges and the host's own addresses by default", () => {
    const b = defaultBlockedCidrs();
    for (const c of ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8", "0.0.0.0/8", "224.0.0.0/4", "fc00::/7", "fe80::/10", "::1/128"]) expect(b).toContain(c);
    expect(b).toEqual(expect.arrayContaining([...ALWAYS_BLOCKED]));
    // Every address of this machine, as a single host: pasta would connect to it from the host.
    for (const a of Object.values(networkInterfaces()).flat()) {
      if (a) expect(b).toContain(checkCidr(`${a.address.split("%")[0]}/${a.family === "IPv4" ? 32 : 128}`));
    }
    for (const c of b) expect(checkCidr(c)).toBe(c);
    expect(new Set(b).size).toBe(b.length);
  });
});
