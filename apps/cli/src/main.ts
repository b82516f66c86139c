#!/usr/bin/env node
/**
 * The molecule CLI. `--version` answers before anything heavy is imported (commander, ws,
 * zod load only for real commands), so it stays far under 150 ms.
 */
import { cliVersion } from "./version.ts";

const argv = process.argv.slice(2);
let code: number;
if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-V")) {
  process.stdout.write(`${cliVersion()}\n`);
  code = 0;
} else {
  const { run } = await import("./program.ts");
  code = await run(argv);
}
// Exit once stdout is flushed: a paused stdin or a closing socket must not keep us waiting.
process.stdout.write("", () => process.exit(code));
