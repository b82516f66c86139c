import type { ProviderName } from "@molecule/shared";
import type { Provider } from "./types.ts";

export * from "./types.ts";
export { createLocalProvider, bwrapAvailable, type LocalProviderOptions } from "./local.ts";

/** Providers by name; a workspace keeps the provider it was created with. */
export type ProviderRegistry = Partial<Record<ProviderName, Provider>>;

export function providerFor(reg: ProviderRegistry, name: string): Provider {
  const p = reg[name as ProviderName];
  if (!p) throw new Error(`provider ${name} is not configured on this worker`);
  return p;
}
