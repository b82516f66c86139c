import { homedir } from "node:os";
import { join } from "node:path";

/** Everything the CLI reads from its environment, in one place. */
export interface CliEnv {
  /** A token that overrides the profile's (scripts, CI). */
  token: string | undefined;
  /** An API URL that overrides the profile's. */
  api: string | undefined;
  profile: string | undefined;
  /** $XDG_CONFIG_HOME/molecule, or ~/.config/molecule. */
  configDir: string;
  term: string | undefined;
}

export function loadCliEnv(env: NodeJS.ProcessEnv = process.env): CliEnv {
  const xdg = env.XDG_CONFIG_HOME;
  // The XDG spec: a relative XDG_CONFIG_HOME is invalid and ignored.
  const base = xdg && xdg.startsWith("/") ? xdg : join(env.HOME || homedir(), ".config");
  return {
    token: env.MOLECULE_TOKEN || undefined,
    api: env.MOLECULE_API || undefined,
    profile: env.MOLECULE_PROFILE || undefined,
    configDir: join(base, "molecule"),
    term: env.TERM || undefined,
  };
}
