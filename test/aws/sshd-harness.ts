/**
 * A real OpenSSH server per fake instance, on a free loopback port, with the
 * instance's own host key and a config of its own. Authentication is public key
 * only, through an AuthorizedKeysCommand that asks the fake EIC service for the
 * keys pushed to this instance and OS user with SendSSHPublicKey in the last 60 s
 * (what EC2 Instance Connect's eic_run_authorized_keys does with IMDS on a real
 * instance). The remote command runs with the fake docker first on PATH.
 *
 * The tests log in as root (PermitRootLogin prohibit-password, AllowUsers root)
 * instead of creating an `ec2-user` account on this shared machine; the provider
 * is configured with MOLECULE_AWS_OS_USER=root, and `whoami` in the "container"
 * answers root as the user journey expects.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { SERVER_BIN, type FakeInstance } from "./fake-cloud.ts";
import { freePort } from "../../scripts/cluster.ts";

export const SSHD = "/usr/sbin/sshd";


export class SshdHarness {
  private procs = new Map<string, ChildProcess>();
  /** sshd's own log lines per instance (auth decisions), for debugging failures. */
  logs = new Map<string, string[]>();

  constructor(private readonly eicPort: () => number) {}

  /** Starts sshd for the instance and resolves with its port once it listens. */
  async start(i: FakeInstance): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      const port = await freePort();
      try {
        await this.launch(i, port);
        return port;
      } catch (err) {
        if (attempt >= 3) throw err;
      }
    }
  }

  private async launch(i: FakeInstance, port: number): Promise<void> {
    const akc = join(i.dir, "authorized-keys-command");
    writeFileSync(akc, `#!/bin/sh\n# $1 = user: keys pushed for ${i.id} in the last 60 s\nexec curl -sf --max-time 5 "http://127.0.0.1:${this.eicPort()}/_fake/active-keys/${i.id}/$1"\n`);
    chmodSync(akc, 0o755);
    const config = join(i.dir, "sshd_config");
    writeFileSync(
      config,
      [
        `Port ${port}`,
        "ListenAddress 127.0.0.1",
        `HostKey ${join(i.dir, "etc-ssh", "ssh_host_ed25519_key")}`,
        "PidFile none",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        "AllowUsers root",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "AuthorizedKeysFile none",
        `AuthorizedKeysCommand ${akc} %u`,
        "AuthorizedKeysCommandUser nobody",
        `SetEnv PATH=${SERVER_BIN}:/usr/sbin:/usr/bin:/sbin:/bin FAKE_DOCKER_STATE=${join(i.dir, "docker")}`,
        "PrintMotd no",
        "PrintLastLog no",
        "ClientAliveInterval 5",
        "LogLevel VERBOSE",
        "",
      ].join("\n"),
    );
    const child = spawn(SSHD, ["-D", "-e", "-f", config], { stdio: ["ignore", "ignore", "pipe"] });
    const log: string[] = [];
    this.logs.set(i.id, log);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`sshd did not start: ${log.join(" | ")}`)), 5000);
      createInterface({ input: child.stderr! }).on("line", (line) => {
        log.push(line);
        if (log.length > 200) log.shift();
        if (line.includes("Server listening")) {
          clearTimeout(t);
          resolve();
        }
      });
      child.once("exit", (code) => {
        clearTimeout(t);
        reject(new Error(`sshd exited with ${code}: ${log.join(" | ")}`));
      });
    });
    this.procs.set(i.id, child);
  }

  async stop(id: string): Promise<void> {
    const p = this.procs.get(id);
    if (!p) return;
    this.procs.delete(id);
    if (p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once("exit", r));
    p.kill("SIGTERM");
    const t = setTimeout(() => p.kill("SIGKILL"), 2000);
    await gone;
    clearTimeout(t);
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.procs.keys()].map((id) => this.stop(id)));
  }
}
