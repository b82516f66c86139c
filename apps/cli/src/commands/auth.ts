import { ApiClient } from "../api.ts";
import { checkProfileName, configPath, writeConfig } from "../config.ts";
import { normalizeApi, type Context } from "../context.ts";
import { CliError, EXIT, usageError } from "../errors.ts";
import { printFields, printJson, printTable } from "../output.ts";

/** Printable ASCII without spaces: what a bearer token can be. */
const TOKEN = /^[\x21-\x7e]{8,500}$/;

export function tokenPrefix(token: string): string {
  return `${token.slice(0, 12)}…`;
}

/** Reads a token typed on the terminal without echoing it. */
function promptHidden(prompt: string): Promise<string> {
  const { stdin, stderr } = process;
  return new Promise((resolve, reject) => {
    // Raw (no echo) before the prompt shows: keys typed the moment it appears are not echoed.
    stdin.setRawMode(true);
    stderr.write(prompt);
    stdin.resume();
    let value = "";
    const done = (err: Error | null) => {
      stdin.off("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
      stderr.write("\n");
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString("utf8")) {
        if (ch === "\r" || ch === "\n") return done(null);
        if (ch === "\x03") return done(new CliError("interrupted", EXIT.interrupted, "interrupted"));
        if (ch === "\x04") return done(new CliError("no token given", EXIT.error, "no_token"));
        if (ch === "\x7f" || ch === "\b") value = value.slice(0, -1);
        else if (ch === "\x15") value = "";
        else if (ch >= " ") value += ch;
      }
    };
    stdin.on("data", onData);
  });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of process.stdin as AsyncIterable<Buffer>) {
    chunks.push(c);
    n += c.length;
    if (n > 4096) throw new CliError("stdin holds more than a token (4 KiB)", EXIT.usage, "usage");
  }
  return Buffer.concat(chunks).toString("utf8");
}

export interface LoginFlags {
  withToken?: boolean;
}

/** `molecule login --api URL`: token from MOLECULE_TOKEN, stdin (piped or --with-token) or a hidden prompt. */
export async function login(ctx: Context, flags: LoginFlags): Promise<number> {
  const name = ctx.profileName();
  const config = ctx.config();
  const apiArg = ctx.flags.api ?? ctx.env.api ?? config.profiles[name]?.api;
  if (!apiArg) throw usageError("molecule login needs --api URL (the URL ./start printed)");
  const api = normalizeApi(apiArg);
  let token: string;
  let source: string;
  if (flags.withToken || (!process.stdin.isTTY && !ctx.env.token)) {
    token = await readStdin();
    source = "stdin";
  } else if (ctx.env.token) {
    token = ctx.env.token;
    source = "MOLECULE_TOKEN";
  } else {
    token = await promptHidden(`Token for ${api}: `);
    source = "prompt";
  }
  token = token.trim();
  if (!token) throw new CliError(`no token given (${source})`, EXIT.error, "no_token");
  if (!TOKEN.test(token)) throw new CliError(`that is not a token (${source}): tokens are printable characters without spaces`, EXIT.error, "bad_token");
  // The token is checked before it is kept: a typo never lands in the config.
  await new ApiClient({ api, token }, ctx.userAgent).listWorkspaces(1);
  config.profiles[name] = { api, token };
  config.current = name;
  writeConfig(ctx.env.configDir, config);
  if (ctx.json) printJson({ profile: name, api, token_prefix: tokenPrefix(token), config: configPath(ctx.env.configDir) });
  else process.stderr.write(`Logged in to ${api} as profile ${name} (token ${tokenPrefix(token)}, kept in ${configPath(ctx.env.configDir)})\n`);
  return EXIT.ok;
}

export function logout(ctx: Context, flags: { all?: boolean }): number {
  const config = ctx.config();
  const names = flags.all ? Object.keys(config.profiles) : [ctx.profileName()];
  const removed = names.filter((n) => config.profiles[n] !== undefined);
  for (const n of removed) delete config.profiles[n];
  if (config.current && !config.profiles[config.current]) delete config.current;
  if (removed.length) writeConfig(ctx.env.configDir, config);
  if (ctx.json) printJson({ removed });
  else process.stderr.write(removed.length ? `Logged out: ${removed.join(", ")}\n` : `Not logged in (profile ${names.join(", ")})\n`);
  return EXIT.ok;
}

/** `molecule whoami`: the profile, the API and the token's prefix, checked against the API. */
export async function whoami(ctx: Context): Promise<number> {
  const target = ctx.target();
  await ctx.client().listWorkspaces(1);
  const out = {
    profile: ctx.profileName(),
    api: target.api,
    token_prefix: tokenPrefix(target.token),
    token_source: ctx.env.token ? "MOLECULE_TOKEN" : "profile",
  };
  if (ctx.json) printJson(out);
  else printFields(Object.entries(out));
  return EXIT.ok;
}

export function listProfiles(ctx: Context): number {
  const config = ctx.config();
  const current = ctx.profileName();
  const rows = Object.entries(config.profiles).map(([name, p]) => ({ name, api: p.api, current: name === current, token_prefix: tokenPrefix(p.token) }));
  if (ctx.json) printJson({ profiles: rows });
  else if (!rows.length) process.stderr.write("No profiles: molecule login --api URL [--profile NAME]\n");
  else printTable(["", "PROFILE", "API", "TOKEN"], rows.map((r) => [r.current ? "*" : "", r.name, r.api, r.token_prefix]));
  return EXIT.ok;
}

export function useProfile(ctx: Context, name: string): number {
  checkProfileName(name);
  const config = ctx.config();
  if (!config.profiles[name]) throw new CliError(`no profile ${name}: molecule login --api URL --profile ${name}`, EXIT.error, "not_found");
  config.current = name;
  writeConfig(ctx.env.configDir, config);
  if (ctx.json) printJson({ current: name });
  else process.stderr.write(`Using profile ${name} (${config.profiles[name]?.api})\n`);
  return EXIT.ok;
}
