import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "../scripts/processes.ts";

/** Runs a tool of the repository's own (node_modules) and returns its exit code and output. */
function run(args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (b: Buffer) => (output += b.toString()));
    child.stderr.on("data", (b: Buffer) => (output += b.toString()));
    child.on("error", reject);
    child.on("exit", (code, signal) => resolve({ code: code ?? (signal ? 1 : 0), output }));
  });
}

// The compiler and the linter are part of the test run, so a type error or a broken rule never lands.
describe("static checks", () => {
  it("the whole repository typechecks (tsc --noEmit, strict)", { timeout: 180_000 }, async () => {
    const r = await run([join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json", "--noEmit", "--pretty", "false"]);
    expect(r.output.trim()).toBe("");
    expect(r.code).toBe(0);
  });

  it("the linter finds nothing (biome.json: the rules the code keeps)", { timeout: 120_000 }, async () => {
    const r = await run([join(ROOT, "node_modules/@biomejs/biome/bin/biome"), "lint", "--colors=off", "--max-diagnostics=50"]);
    expect(r.code, r.output).toBe(0);
  });
});
