import { generateKeyPairSync, randomBytes } from "node:crypto";
import { chmod, lstat, mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { EC2InstanceConnectClient, SendSSHPublicKeyCommand } from "@aws-sdk/client-ec2-instance-connect";
import { INSTANCE_ID_RE, OS_USER_RE } from "@molecule/shared";
import { TerminalUnavailableError } from "../types.ts";
import type { AwsProviderOptions } from "./config.ts";
import { awsCode, awsMessage, INFRA_DOC, isAccessDenied, isCredentialsError, isTransientAws } from "./errors.ts";

function sshString(v: Buffer | string): Buffer {
  const b = Buffer.from(v);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

export interface KeyPair {
  /** OpenSSH private key file content (openssh-key-v1, unencrypted). */
  privateKey: string;
  /** `ssh-ed25519 <base64> <comment>` */
  publicKey: string;
}

/**
 * A fresh ed25519 key pair in OpenSSH formats, made in-process (no ssh-keygen
 * child per session). The private key never leaves this worker's key directory.
 */
export function generateEd25519(comment: string): KeyPair {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const pub = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url");
  const seed = Buffer.from(privateKey.export({ format: "jwk" }).d!, "base64url");
  const pubBlob = Buffer.concat([sshString("ssh-ed25519"), sshString(pub)]);
  const check = randomBytes(4);
  const body = Buffer.concat([check, check, sshString("ssh-ed25519"), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)]);
  const pad = Buffer.from(Array.from({ length: (8 - (body.length % 8)) % 8 }, (_, i) => i + 1));
  const nkeys = Buffer.alloc(4);
  nkeys.writeUInt32BE(1);
  const file = Buffer.concat([
    Buffer.from("openssh-key-v1\0", "latin1"),
    sshString("none"),
    sshString("none"),
    sshString(""),
    nkeys,
    sshString(pubBlob),
    sshString(Buffer.concat([body, pad])),
  ]);
  const b64 = file.toString("base64").replace(/(.{70})/g, "$1\n").replace(/\n?$/, "\n");
  return {
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}-----END OPENSSH PRIVATE KEY-----\n`,
    publicKey: `ssh-ed25519 ${pubBlob.toString("base64")} ${comment}`,
  };
}

export interface SessionKeyDir {
  dir: string;
  keyFile: string;
  knownHostsFile: string;
  publicKey: string;
  remove(): Promise<void>;
}

/** Makes the worker's key directory (0700) if needed and removes session dirs left by a crash. */
export async function prepareKeyDir(keyDir: string, staleMs = 3600_000): Promise<void> {
  await mkdir(keyDir, { recursive: true, mode: 0o700 });
  // It may sit in a shared directory such as /tmp: refuse one that someone else made (or a symlink).
  const st = await lstat(keyDir);
  if (!st.isDirectory() || st.uid !== process.getuid?.()) throw new Error(`the key directory ${keyDir} must be a directory owned by the worker's user`);
  await chmod(keyDir, 0o700);
  const now = Date.now();
  for (const e of await readdir(keyDir).catch(() => [] as string[])) {
    if (!e.startsWith("s-")) continue;
    const p = join(keyDir, e);
    const st = await stat(p).catch(() => null);
    if (st && now - st.mtimeMs > staleMs) await rm(p, { recursive: true, force: true });
  }
}

/**
 * A 0700 directory of this session's own, holding the private key (0600) and the
 * pinned known_hosts line; deleted when the session ends.
 */
export async function writeSessionKey(keyDir: string, sessionId: string, knownHosts: string | null): Promise<SessionKeyDir> {
  const dir = await mkdtemp(join(keyDir, "s-"));
  await chmod(dir, 0o700);
  const pair = generateEd25519(`molecule-${sessionId}`);
  const keyFile = join(dir, "id_ed25519");
  const knownHostsFile = join(dir, "known_hosts");
  await writeFile(keyFile, pair.privateKey, { mode: 0o600 });
  if (knownHosts) await writeFile(knownHostsFile, knownHosts, { mode: 0o600 });
  return { dir, keyFile, knownHostsFile, publicKey: pair.publicKey, remove: () => rm(dir, { recursive: true, force: true }) };
}

const doc = `see ${INFRA_DOC}`;

/** Pushes the session's public key for 60 s with EC2 Instance Connect; failures become protocol errors. */
export function createKeyPusher(o: AwsProviderOptions) {
  const client = new EC2InstanceConnectClient({
    region: o.region,
    ...(o.eicEndpoint ? { endpoint: o.eicEndpoint } : {}),
    ...(o.sdkMaxAttempts ? { maxAttempts: o.sdkMaxAttempts } : {}),
  });
  return {
    client,
    async push(instanceId: string, osUser: string, publicKey: string): Promise<void> {
      if (!INSTANCE_ID_RE.test(instanceId)) throw new TerminalUnavailableError("not_ready", "the workspace has no valid instance id");
      if (!OS_USER_RE.test(osUser)) throw new TerminalUnavailableError("eic_wiring_incomplete", `invalid OS user ${JSON.stringify(osUser)}`);
      try {
        const r = await client.send(new SendSSHPublicKeyCommand({ InstanceId: instanceId, InstanceOSUser: osUser, SSHPublicKey: publicKey }));
        if (r.Success === false) throw Object.assign(new Error("SendSSHPublicKey did not succeed"), { name: "ServiceException" });
      } catch (err) {
        throw keyPushError(err, instanceId, osUser);
      }
    },
    destroy(): void {
      client.destroy();
    },
  };
}

export function keyPushError(err: unknown, instanceId: string, osUser: string): Error {
  const code = awsCode(err);
  const msg = awsMessage(err);
  if (err instanceof TerminalUnavailableError) return err;
  if (isAccessDenied(err)) {
    return new TerminalUnavailableError(
      "eic_wiring_incomplete",
      `EIC wiring incomplete: the terminal worker's IAM identity may not call ec2-instance-connect:SendSSHPublicKey on ${instanceId} (${code}: ${msg}). Allow it for instances tagged Role=workspace; ${doc}#iam-policy`,
    );
  }
  if (isCredentialsError(err)) {
    return new TerminalUnavailableError(
      "eic_wiring_incomplete",
      `EIC wiring incomplete: the terminal worker has no valid AWS credentials (${code}: ${msg}); ${doc}#credentials`,
    );
  }
  switch (code) {
    case "EC2InstanceNotFoundException":
      return new TerminalUnavailableError("not_ready", `the workspace instance ${instanceId} no longer exists; restart the workspace`);
    case "EC2InstanceStateInvalidException":
    case "EC2InstanceUnavailableException":
      return new TerminalUnavailableError("not_ready", `the workspace instance ${instanceId} is not running (${msg}); restart the workspace`);
    case "InvalidArgsException":
      return new TerminalUnavailableError("eic_wiring_incomplete", `EIC wiring incomplete: SendSSHPublicKey refused the request for OS user ${osUser} (${msg}); ${doc}`);
  }
  // Not a setup problem: the session fails as an internal error and the user can simply retry.
  if (isTransientAws(err)) return new Error(`EC2 Instance Connect is busy or unreachable (${code}: ${msg}); try again in a moment`);
  return new TerminalUnavailableError(
    "eic_wiring_incomplete",
    `EIC wiring incomplete: SendSSHPublicKey to ${instanceId} failed (${code}: ${msg}); ${doc}#troubleshooting`,
  );
}
