import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { constants } from "node:os";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { CliError, EXIT } from "../errors.ts";

/**
 * `molecule admin …`: the server-side admin tool (orgs, tokens), which talks to PostgreSQL
 * directly. It runs only from a checkout of the repository (`pnpm molecule admin …`), never
 * from the installed CLI, which knows nothing but the REST API.
 */
export async function admin(args: string[]): Promise<number> {
  // From apps/cli/src/commands (source) or apps/cli/dist (bundle), the checkout's scripts/.
  const candidates = ["../../../../scripts/molecule.ts", "../../../scripts/molecule.ts"].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  const script = candidates.find((p) => existsSync(p));
  if (!script) {
    throw new CliError("admin commands talk to PostgreSQL directly and run on a server checkout: pnpm molecule admin … (or node --import tsx scripts/molecule.ts …)", EXIT.usage, "usage");
  }
  const child = spawn(process.execPath, ["--import", "tsx", script, ...args], { stdio: "inherit", cwd: dirname(dirname(script)) });
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) => resolve(code ?? 128 + (signal ? constants.signals[signal] : 0)));
  });
}
