import type { ProviderName } from "@molecule/shared";
import type { Provider } from "./types.ts";

export * from "./types.ts";
export { createLocalProvider, bwrapAvailable, type LocalProvider, type LocalProviderOptions } from "./local.ts";
export { createDockerProvider, type DockerProviderOptions } from "./docker.ts";
export { awsOptionsFromEnv, type AwsProviderOptions } from "./aws/config.ts";
export type { AwsProvider } from "./aws/provider.ts";

/** The aws provider, loaded only when configured: the AWS SDK takes about a second to import. */
export async function loadAwsProvider(o: import("./aws/config.ts").AwsProviderOptions): Promise<import("./aws/provider.ts").AwsProvider> {
  return (await import("./aws/provider.ts")).createAwsProvider(o);
}

/** Providers by name; a workspace keeps the provider it was created with. */
export type ProviderRegistry = Partial<Record<ProviderName, Provider>>;

export function providerFor(reg: ProviderRegistry, name: string): Provider {
  const p = reg[name as ProviderName];
  if (!p) throw new Error(`provider ${name} is not configured on this worker`);
  return p;
}
