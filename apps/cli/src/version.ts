import { readFileSync } from "node:fs";

declare const __MOLECULE_CLI_VERSION__: string | undefined;

/** The package version: inlined by the build; read from package.json when run from source. */
export function cliVersion(): string {
  if (typeof __MOLECULE_CLI_VERSION__ === "string") return __MOLECULE_CLI_VERSION__;
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version?: unknown };
  return typeof pkg.version === "string" ? pkg.version : "0.0.0";
}
