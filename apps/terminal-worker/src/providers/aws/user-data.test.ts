import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { generateEd25519 } from "./eic.ts";
import { buildUserData, containerName, parseConsole, validHostKey } from "./user-data.ts";

const WS = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const input = { workspaceId: WS, orgId: "org-1", runtime: "hermes", tier: 2, image: "registry.example/ws-{runtime}:1" };

describe("user data", () => {
  it("names the container after the workspace and is valid bash", () => {
    expect(containerName(WS)).toBe("ws-0a1b2c3d-4e5");
    const ud = buildUserData(input);
    expect(ud.startsWith("#!/bin/bash\n")).toBe(true);
    expect(ud).toContain("C='ws-0a1b2c3d-4e5'");
    expect(ud).toContain("IMAGE='registry.example/ws-hermes:1'");
    expect(ud).toContain(`MOLECULE_WS_ID='${WS}'`);
    const dir = mkdtempSync(join(tmpdir(), "ud-"));
    try {
      writeFileSync(join(dir, "ud.sh"), ud);
      expect(spawnSync("bash", ["-n", join(dir, "ud.sh")]).status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses values that could change the script", () => {
    expect(() => buildUserData({ ...input, image: "img'; rm -rf / #" })).toThrow();
    expect(() => buildUserData({ ...input, image: "img $(id)" })).toThrow();
    expect(() => buildUserData({ ...input, runtime: "hermes'" })).toThrow(/runtime/);
    expect(() => buildUserData({ ...input, orgId: "a b" })).toThrow(/org/);
    expect(() => buildUserData({ ...input, workspaceId: "../../x" })).toThrow();
  });
});

describe("parseConsole", () => {
  const key = generateEd25519("x").publicKey.split(" ").slice(0, 2).join(" ");
  it("finds readiness, failures and host keys (ours and cloud-init's)", () => {
    const out = [
      "[   12.3] cloud-init[800]: something",
      `MOLECULE_HOST_KEY ${key}`,
      "MOLECULE_READY ws-0a1b2c3d-4e5",
      "-----BEGIN SSH HOST KEY KEYS-----",
      "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBOo= root@ip",
      "-----END SSH HOST KEY KEYS-----",
    ].join("\r\n");
    const s = parseConsole(out, "ws-0a1b2c3d-4e5");
    expect(s.ready).toBe(true);
    expect(s.failed).toBeNull();
    expect(s.hostKeys[0]).toBe(key);
    expect(s.hostKeys[1]).toMatch(/^ecdsa-sha2-nistp256 /);
  });

  it("ignores another container's marker and reports a failure reason", () => {
    expect(parseConsole("MOLECULE_READY ws-ffffffff-fff", "ws-0a1b2c3d-4e5").ready).toBe(false);
    const s = parseConsole("MOLECULE_FAILED ws-0a1b2c3d-4e5 docker pull x failed", "ws-0a1b2c3d-4e5");
    expect(s.failed).toBe("docker pull x failed");
  });

  it("accepts only well-formed keys", () => {
    const [t, b] = key.split(" ") as [string, string];
    expect(validHostKey(t, b)).toBe(true);
    expect(validHostKey("ssh-rsa", b)).toBe(false);
    expect(validHostKey(t, "AAAA")).toBe(false);
    expect(parseConsole("MOLECULE_HOST_KEY ssh-ed25519 bm90IGEga2V5", "c").hostKeys).toEqual([]);
  });
});
