import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { untraversableAncestor, SYSTEM_SANDBOX_ROOT } from "./local-settings.ts";
import { EGRESS_RESOLV_FILE } from "./sandbox-argv.ts";
import { EGRESS_RESOLV_CONF } from "./sandbox-egress.ts";

/**
 * Makes the sandbox root traversable but not listable (0711; its parents must let
 * others through, checked here), and writes the passwd, group and hosts every
 * sandbox sees as its /etc's (`<root>/.etc`, never the host's). Returns that dir.
 */
export function prepareSandboxRoot(root: string, o: { shell: string; checkTraversable: boolean }): string {
  mkdirSync(root, { recursive: true, mode: 0o711 });
  if (o.checkTraversable) {
    chmodSync(root, 0o711);
    const bad = untraversableAncestor(root);
    if (bad !== null) {
      throw new Error(
        `the sandbox root ${root} is not reachable by the sandbox uids: ${bad} has no x permission for others ` +
          `(chmod o+x ${bad}, or set MOLECULE_SANDBOX_ROOT to a directory outside it, e.g. ${SYSTEM_SANDBOX_ROOT})`,
      );
    }
  }
  const etc = join(root, ".etc");
  mkdirSync(etc, { recursive: true, mode: 0o755 });
  chmodSync(etc, 0o755);
  const files: Record<string, string> = {
    passwd: `root:x:0:0:root:/root:${o.shell}\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n`,
    group: "root:x:0:\nnogroup:x:65534:\n",
    hosts: "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    [EGRESS_RESOLV_FILE]: EGRESS_RESOLV_CONF,
  };
  for (const [name, text] of Object.entries(files)) {
    const p = join(etc, name);
    writeFileSync(p, text, { mode: 0o644 });
    chmodSync(p, 0o644);
  }
  if (!existsSync(join(etc, "passwd"))) throw new Error(`cannot write ${etc}`);
  return etc;
}
