import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { CliError, usageError } from "./errors.ts";

export const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const profileSchema = z.object({ api: z.string().url(), token: z.string().min(1).max(500) });
const configSchema = z.object({
  current: z.string().regex(PROFILE_NAME).optional(),
  profiles: z.record(z.string().regex(PROFILE_NAME), profileSchema).default({}),
});
export type Profile = z.infer<typeof profileSchema>;
export type Config = z.infer<typeof configSchema>;

export function configPath(dir: string): string {
  return join(dir, "config.json");
}

export function checkProfileName(name: string): string {
  if (!PROFILE_NAME.test(name)) throw usageError(`profile name ${JSON.stringify(name)}: letters, digits, '.', '_', '-' (up to 64)`);
  return name;
}

export function readConfig(dir: string): Config {
  const file = configPath(dir);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { profiles: {} };
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`, 1, "config");
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new CliError(`${file} is not valid JSON; fix it or remove it and log in again`, 1, "config");
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw new CliError(`${file} is not a molecule config (${parsed.error.issues[0]?.message ?? "invalid"}); fix it or remove it and log in again`, 1, "config");
  return parsed.data;
}

/** Writes the config with mode 0600 in a 0700 directory, atomically (a crash never leaves half a file). */
export function writeConfig(dir: string, config: Config): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = configPath(dir);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600); // an umask or an existing file never widens it
  renameSync(tmp, file);
}

/** The profile a command uses: --profile, then MOLECULE_PROFILE, then the current one, then "default". */
export function profileName(config: Config, flag: string | undefined, envProfile: string | undefined): string {
  return checkProfileName(flag ?? envProfile ?? config.current ?? "default");
}
