import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { TerminalUnavailableError } from "../types.ts";
import { generateEd25519, keyPushError, prepareKeyDir, writeSessionKey } from "./eic.ts";

const root = mkdtempSync(join(tmpdir(), "eic-test-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("session keys", () => {
  it("are OpenSSH ed25519 keys that ssh-keygen reads back to the same public key", async () => {
    const dir = join(root, "keys");
    await prepareKeyDir(dir);
    const k = await writeSessionKey(dir, "sess", null);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(k.dir).mode & 0o777).toBe(0o700);
    expect(statSync(k.keyFile).mode & 0o777).toBe(0o600);
    const r = spawnSync("ssh-keygen", ["-y", "-f", k.keyFile], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split(" ").slice(0, 2)).toEqual(k.publicKey.split(" ").slice(0, 2));
    expect(k.publicKey).toMatch(/^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\S+ molecule-sess$/);
    await k.remove();
    expect(readdirSync(dir)).toEqual([]);
  });

  it("differ every time", () => {
    expect(generateEd25519("a").publicKey).not.toBe(generateEd25519("a").publicKey);
  });

  it("refuse a key directory that is a symlink", async () => {
    const real = join(root, "real");
    await prepareKeyDir(real);
    const link = join(root, "link");
    symlinkSync(real, link);
    await expect(prepareKeyDir(link)).rejects.toThrow(/owned by the worker/);
  });
});

describe("SendSSHPublicKey errors", () => {
  const e = (name: string, message = "m") => keyPushError(Object.assign(new Error(message), { name }), "i-0123456789abcdef0", "ec2-user");
  it("a missing IAM permission is EIC wiring, naming the action", () => {
    const err = e("AccessDeniedException", "User: arn:x is not authorized to perform: ec2-instance-connect:SendSSHPublicKey");
    expect(err).toBeInstanceOf(TerminalUnavailableError);
    expect((err as TerminalUnavailableError).reason).toBe("eic_wiring_incomplete");
    expect(err.message).toMatch(/ec2-instance-connect:SendSSHPublicKey.*docs\/infra\/workspace-terminal\.md/);
  });
  it("a stopped or missing instance is not_ready; throttling is a plain retryable error", () => {
    expect((e("EC2InstanceStateInvalidException") as TerminalUnavailableError).reason).toBe("not_ready");
    expect((e("EC2InstanceNotFoundException") as TerminalUnavailableError).reason).toBe("not_ready");
    const t = e("ThrottlingException");
    expect(t).not.toBeInstanceOf(TerminalUnavailableError);
    expect(t.message).toMatch(/try again/);
  });
});
