/**
 * Runs every test (vitest) against the local Redis and PostgreSQL, each run in a
 * database and Redis key prefix of its own, then prints one summary line:
 * `N passed, N failed, N skipped`.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadApiEnv } from "../apps/api/src/env.ts";
import { requireServices } from "./lib.ts";
import { ROOT } from "./processes.ts";

const env = loadApiEnv();
await requireServices(env.DATABASE_URL, env.REDIS_URL);
// A report of this run's own: runs in the same checkout must not read each other's counts.
const report = join(tmpdir(), `molecule-vitest-${process.pid}-${Date.now()}.json`);
rmSync(report, { force: true });
const vitest = join(ROOT, "node_modules/vitest/vitest.mjs");
const args = [vitest, "run", "--reporter=default", "--reporter=json", `--outputFile.json=${report}`, ...process.argv.slice(2)];
const child = spawn(process.execPath, args, { cwd: ROOT, stdio: "inherit", env: process.env });
const code: number = await new Promise((resolve) => child.on("exit", (c, s) => resolve(c ?? (s ? 1 : 0))));
let passed = 0;
let failed = 0;
let skipped = 0;
if (existsSync(report)) {
  const r = JSON.parse(readFileSync(report, "utf8")) as {
    numPassedTests: number;
    numFailedTests: number;
    numPendingTests: number;
    numTodoTests: number;
    numFailedTestSuites: number;
  };
  passed = r.numPassedTests;
  failed = r.numFailedTests + (r.numFailedTests === 0 && code !== 0 ? Math.max(1, r.numFailedTestSuites) : 0);
  skipped = r.numPendingTests + r.numTodoTests;
} else if (code !== 0) {
  failed = 1;
}
rmSync(report, { force: true });
process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
process.exit(code !== 0 || failed > 0 ? 1 : 0);
