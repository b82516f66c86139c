import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { bwrapAvailable, createLocalProvider } from "./local.ts";
import { bwrapArgs, CGROUP_JOIN_SCRIPT, EGRESS_RESOLV_FILE, sandboxArgv, type SandboxArgvOptions } from "./sandbox-argv.ts";
import { prepareEtcTree } from "./sandbox-etc.ts";
import { prepareSandboxRoot } from "./sandbox-root.ts";
import { egressArgv } from "./sandbox-egress.ts";
import { parseSize } from "./local-settings.ts";
import { claimUid, releaseUid } from "./sandbox-uid.ts";
import { ProviderError } from "./types.ts";

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "molecule-local-"));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const base: SandboxArgvOptions = {
  dir: "/srv/sbx/ws",
  hostname: "ws-1",
  shell: "/bin/bash",
  env: { MOLECULE_WS_ID: "x" },
  uid: 200_001,
  cgroupProcs: ["/sys/fs/cgroup/pids/molecule/x/cgroup.procs"],
  nproc: 64,
  fileSizeBytes: 1024,
  etcDir: "/srv/sbx/.etc",
  network: "none",
};

describe("the sandbox exec chain", () => {
  it("joins the cgroup, sets limits and drops to the workspace uid before bwrap, which sees none of the host's / or /dev", () => {
    const argv = sandboxArgv({ ...base, wrap: (bw) => ["pasta-stub", "--", ...bw] });
    const at = (s: string) => argv.indexOf(s);
    expect(argv.slice(0, 4)).toEqual(["/bin/sh", "-c", CGROUP_JOIN_SCRIPT, "sh"]);
    expect(at("/bin/sh")).toBeLessThan(at("prlimit"));
    expect(at("prlimit")).toBeLessThan(at("setpriv"));
    expect(at("setpriv")).toBeLessThan(at("pasta-stub"));
    expect(at("pasta-stub")).toBeLessThan(at("bwrap"));
    expect(argv).toContain("--nproc=64:64");
    expect(argv).toContain("--reuid=200001");
    expect(argv).toContain("--bounding-set=-all");
    const bw = argv.slice(at("bwrap"));
    expect(bw.join(" ")).not.toMatch(/--ro-bind \/ \/|--dev-bind|--share-net/);
    expect(bw.join(" ")).toContain("--bind /srv/sbx/ws /");
    expect(bw).toContain("--unshare-all");
    for (const secret of ["/etc/shadow", "/etc/gshadow", "/etc/sudoers"]) expect(bw).not.toContain(secret);
    expect(bw.slice(-2)).toEqual(["/bin/bash", "--login"]);
  });

  it("with egress: pasta in front of bwrap, which shares pasta's network namespace and resolves through pasta's forwarder", () => {
    const argv = sandboxArgv({ ...base, network: "egress", wrap: (bw) => egressArgv(bw, { blocked: ["10.0.0.0/8"] }) });
    const bw = argv.slice(argv.indexOf("bwrap"));
    expect(argv.indexOf("setpriv")).toBeLessThan(argv.indexOf("pasta"));
    expect(argv.indexOf("pasta")).toBeLessThan(argv.indexOf("bwrap"));
    expect(bw).toContain("--share-net");
    const resolv = bw.indexOf("/etc/resolv.conf");
    expect(bw.slice(resolv - 2, resolv + 1)).toEqual(["--ro-bind", `/srv/sbx/.etc/${EGRESS_RESOLV_FILE}`, "/etc/resolv.conf"]);
    expect(bw.filter((a) => a === "/etc/resolv.conf")).toHaveLength(1);
    // Without egress the host's resolv.conf, and no network of anyone else's.
    const none = sandboxArgv(base);
    expect(none).not.toContain("--share-net");
    expect(none.join(" ")).toContain("--ro-bind-try /etc/resolv.conf /etc/resolv.conf");
  });

  it("as a normal user: no uid change, no nproc (it would count all of that user's processes), no cgroup step", () => {
    const argv = sandboxArgv({ ...base, uid: null, nproc: null, cgroupProcs: [] });
    expect(argv).not.toContain("setpriv");
    expect(argv).not.toContain("/bin/sh");
    expect(argv.slice(0, 3)).toEqual(["prlimit", "--fsize=1024:1024", "--"]);
  });

  it("refuses egress until a wrapper is wired", () => {
    expect(() => createLocalProvider({ root: tmp(), bwrap: "auto", shell: "/bin/bash", network: "egress" })).toThrow(ProviderError);
    expect(() => createLocalProvider({ root: tmp(), bwrap: "auto", shell: "/bin/bash", network: "egress" })).toThrow(/egress not available/);
  });
});

describe("per-workspace uids", () => {
  it("gives each workspace its own uid, the same one on a retried claim, and frees it on release", async () => {
    const root = tmp();
    const range = { base: 300_000, count: 4 };
    const [a, b] = [randomUUID(), randomUUID()];
    const ua = await claimUid(root, a, range);
    const ub = await claimUid(root, b, range);
    expect(ua).not.toBe(ub);
    expect(await claimUid(root, a, range)).toBe(ua);
    for (const u of [ua, ub]) expect(u >= 300_000 && u < 300_004).toBe(true);
    await releaseUid(root, a, null, range);
    const c = randomUUID();
    await claimUid(root, c, range);
    await claimUid(root, randomUUID(), range);
    await claimUid(root, randomUUID(), range);
    await expect(claimUid(root, randomUUID(), range)).rejects.toThrow(/no free sandbox uid/);
    // Release of someone else's slot is a no-op.
    await releaseUid(root, a, ub, range);
    await expect(claimUid(root, randomUUID(), range)).rejects.toThrow(/no free sandbox uid/);
  });

  it("parses sizes", () => {
    expect(parseSize("2g")).toBe(2 * 1024 ** 3);
    expect(parseSize("512M")).toBe(512 * 1024 ** 2);
    expect(parseSize("1048576")).toBe(1048576);
    expect(parseSize("two")).toBeNull();
    expect(parseSize("0")).toBeNull();
  });
});

describe.skipIf(!bwrapAvailable() && process.env.CI !== "true")("shells opened at the same moment", () => {
  it("all start in a new workspace (none loses a race to make the sandbox's /bin)", async () => {
    const root = tmp();
    const provider = createLocalProvider({ root, bwrap: "on", shell: "/bin/bash" });
    const id = randomUUID();
    await provider.create({ id } as never, { recordInstanceId: async () => {} });
    const commands = await Promise.all(
      Array.from({ length: 8 }, (_, i) => provider.terminalCommand({ sessionId: randomUUID(), workspaceId: id, orgId: "o", instanceId: null, cols: 80, rows: 24 + i })),
    );
    const results = await Promise.all(
      commands.map(
        (c) =>
          new Promise<{ code: number | null; err: string }>((resolve) => {
            // bash --login with stdin at EOF exits 0 once the sandbox is up: a bwrap failure exits 1.
            const child = spawn(c.file, c.args, { env: c.env, cwd: c.cwd, stdio: ["ignore", "ignore", "pipe"], timeout: 20_000 });
            let err = "";
            child.stderr.on("data", (b: Buffer) => (err += b.toString()));
            child.on("close", (code) => resolve({ code, err }));
          }),
      ),
    );
    for (const r of results) expect(r, r.err).toEqual({ code: 0, err: "" });
    await provider.destroy({ id } as never);
  });

  it("a later open of a workspace set up before makes HOME again if the tenant removed it, and says not_ready once the sandbox is gone", async () => {
    const root = tmp();
    const provider = createLocalProvider({ root, bwrap: "on", shell: "/bin/bash" });
    const id = randomUUID();
    await provider.create({ id } as never, { recordInstanceId: async () => {} });
    const ctx = { sessionId: randomUUID(), workspaceId: id, orgId: "o", instanceId: null, cols: 80, rows: 24 };
    await provider.terminalCommand(ctx);
    rmSync(join(root, id, "root"), { recursive: true });
    await provider.terminalCommand({ ...ctx, sessionId: randomUUID() });
    expect(existsSync(join(root, id, "root"))).toBe(true);
    // Gone behind this process's back (another worker destroyed it): a clear refusal, not a failed spawn.
    rmSync(join(root, id), { recursive: true });
    await expect(provider.terminalCommand({ ...ctx, sessionId: randomUUID() })).rejects.toMatchObject({ reason: "not_ready" });
  });
});

describe("the sandbox's /etc", () => {
  it("is one prepared tree: the allowed host files and the generated ones, never shadow or private keys, made once per host content", () => {
    const root = tmp();
    const generated = prepareSandboxRoot(root, { shell: "/bin/bash", checkTraversable: false });
    const tree = prepareEtcTree(root, generated);
    expect(readFileSync(join(tree, "passwd"), "utf8")).toBe(readFileSync(join(generated, "passwd"), "utf8"));
    for (const secret of ["shadow", "gshadow", "sudoers", "ssh", "ssl/private"]) expect(existsSync(join(tree, secret)), secret).toBe(false);
    if (existsSync("/etc/ssl/certs")) expect(existsSync(join(tree, "ssl/certs"))).toBe(true);
    expect(prepareEtcTree(root, generated)).toBe(tree);
    expect(bwrapArgs({ ...base, etcTree: tree }).join(" ")).toContain(`--ro-bind ${tree} /etc`);
  });
});
