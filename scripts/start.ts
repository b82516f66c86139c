/**
 * The single-node stack on local defaults: checks Redis and PostgreSQL, creates
 * and migrates the database, makes sure the default org has a token, builds the
 * Canvas if needed, then runs one API node and one terminal-worker: compiled
 * (scripts/build.ts, rebuilt when the sources changed), or with --watch from the
 * sources under tsx, each restarted when a file it loaded changes.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadApiEnv } from "../apps/api/src/env.ts";
import { API_MAIN, WORKER_MAIN, startNode, stopProc } from "./processes.ts";
import { banner, buildCanvasIfNeeded, defaultOrgToken, nodeEnv, prepareServices, stateDir } from "./stack-setup.ts";

let watch = false;
try {
  watch = parseArgs({ options: { watch: { type: "boolean", default: false } } }).values.watch;
} catch (err) {
  process.stderr.write(`${(err as Error).message}\nusage: ./start [--watch]\n`);
  process.exit(2);
}
const env = loadApiEnv();
await prepareServices(env);
// The dev token is kept (0600) in the state dir so every start can print it again.
const state = stateDir();
const token = await defaultOrgToken(env, join(state, "dev-token"));
buildCanvasIfNeeded();

const logs = join(state, "logs");
const childEnv = nodeEnv(process.env);
const worker = startNode("terminal-worker", WORKER_MAIN, childEnv, join(logs, "worker.log"), { watch });
const api = startNode("api", API_MAIN, childEnv, join(logs, "api.log"), { watch });
try {
  const [ready] = await Promise.all([api.ready, worker.ready]);
  const url = `http://${env.HOST}:${ready.port}`;
  process.stdout.write(banner({ title: "Molecule is running", url, token, logs: [join(logs, "api.log"), join(logs, "worker.log")] }));
} catch (err) {
  process.stderr.write(`${(err as Error).message}; see ${logs}\n`);
  await Promise.all([stopProc(api), stopProc(worker)]);
  process.exit(1);
}

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await Promise.all([stopProc(api), stopProc(worker)]);
  process.exit(0);
};
process.on("SIGINT", () => void stop());
process.on("SIGTERM", () => void stop());
void Promise.race([api.exited, worker.exited]).then(async (code) => {
  if (stopping) return;
  process.stderr.write(`a process exited (${code}); stopping. See ${logs}\n`);
  await stop();
});
