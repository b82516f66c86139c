import { ApiClient, type ApiTarget } from "./api.ts";
import { profileName, readConfig, type Config } from "./config.ts";
import type { CliEnv } from "./env.ts";
import { CliError } from "./errors.ts";

export interface GlobalFlags {
  profile?: string;
  api?: string;
  json?: boolean;
}

/** What every command gets: the environment, the chosen profile and the API it talks to. */
export class Context {
  private cached: Config | null = null;
  private readonly interruptHandlers = new Set<() => Promise<unknown>>();

  constructor(
    readonly env: CliEnv,
    readonly flags: GlobalFlags,
    readonly version: string,
  ) {}

  get json(): boolean {
    return this.flags.json === true;
  }

  get userAgent(): string {
    return `molecule-cli/${this.version} node/${process.versions.node}`;
  }

  config(): Config {
    this.cached ??= readConfig(this.env.configDir);
    return this.cached;
  }

  profileName(): string {
    return profileName(this.config(), this.flags.profile, this.env.profile);
  }

  /** The API URL and token: --api / MOLECULE_API and MOLECULE_TOKEN override the profile's. */
  target(): ApiTarget {
    const name = this.profileName();
    const p = this.config().profiles[name];
    const api = this.flags.api ?? this.env.api ?? p?.api;
    const token = this.env.token ?? p?.token;
    if (!api || !token) {
      throw new CliError(
        p || this.env.token ? "no API URL: pass --api URL or set MOLECULE_API" : `not logged in${name === "default" ? "" : ` (profile ${name})`}: run molecule login --api URL`,
        1,
        "not_logged_in",
      );
    }
    return { api: normalizeApi(api), token };
  }

  client(): ApiClient {
    return new ApiClient(this.target(), this.userAgent);
  }

  /**
   * Something to end cleanly when Ctrl-C ends the CLI (a remote command's session: closed, it
   * ends the command, where a dropped socket would leave it running for the orphan grace).
   * Returns the way to take it back.
   */
  onInterrupt(fn: () => Promise<unknown>): () => void {
    this.interruptHandlers.add(fn);
    return () => this.interruptHandlers.delete(fn);
  }

  /** Runs the interrupt handlers; resolves once they are done, or after `ms`. */
  async interrupt(ms: number): Promise<void> {
    if (!this.interruptHandlers.size) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.interruptHandlers].map((f) => f())), new Promise((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
  }
}

/** An http(s) URL without a trailing slash; anything else is a usage mistake. */
export function normalizeApi(api: string): string {
  let u: URL;
  try {
    u = new URL(api);
  } catch {
    throw new CliError(`--api ${JSON.stringify(api)} is not a URL (e.g. http://127.0.0.1:8080)`, 2, "usage");
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new CliError(`--api must be an http:// or https:// URL, not ${u.protocol}`, 2, "usage");
  if (u.username || u.password) throw new CliError("--api must not carry credentials; the token is asked for separately", 2, "usage");
  return u.toString().replace(/\/+$/, "");
}
