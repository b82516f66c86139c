/**
 * The test fakes as a standalone process, to try the aws provider without AWS
 * (docs/tutorials/aws-workspace-terminal.md): the fake EC2 + EIC APIs, an sshd per
 * fake instance (and, with MOLECULE_TEST_AWS_TUNNEL=aws-cli, the fake aws-cli). Prints the environment for ./start as
 * `export` lines on stdout, then serves until SIGINT/SIGTERM and cleans up.
 *
 *   node --import tsx test/aws/fake-aws-serve.ts > /tmp/fake-aws.env &
 *   . /tmp/fake-aws.env && ./start
 */
import { startAwsHarness } from "./harness.ts";

const h = await startAwsHarness();
const env = h.env({ MOLECULE_AWS_POLL_MS: "500", MOLECULE_AWS_READY_TIMEOUT_MS: "60000" });
const quote = (v: string) => `'${v.replace(/'/g, `'\\''`)}'`;
// The fake aws goes first on PATH only in aws-cli mode (MOLECULE_TEST_AWS_TUNNEL=aws-cli); native needs no aws at all.
const lines = Object.entries(env)
  .filter(([k]) => k !== "PATH" || h.tunnel === "aws-cli")
  .map(([k, v]) => (k === "PATH" ? `export PATH=${quote(v.split(":")[0]!)}:"$PATH"` : `export ${k}=${quote(v)}`));
process.stdout.write(`# fake AWS for Molecule (pid ${process.pid}); stop it with: kill ${process.pid}\n${lines.join("\n")}\n`);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await h.close();
  process.exit(0);
}
process.on("SIGINT", () => void stop());
process.on("SIGTERM", () => void stop());
