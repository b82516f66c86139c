// Preloaded with NODE_OPTIONS="--import <this file>" by `BENCH_CPU_PROF=<dir> pnpm bench`
// (Node refuses --cpu-prof in NODE_OPTIONS): profiles the whole process with the
// inspector and writes <dir>/<name>-<pid>.cpuprofile when it exits.
import { Session } from "node:inspector";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.env.BENCH_CPU_PROF;
if (dir) {
  const session = new Session();
  session.connect();
  session.post("Profiler.enable");
  session.post("Profiler.setSamplingInterval", { interval: 200 });
  session.post("Profiler.start");
  const name = (process.argv[1] ?? "node").split("/").slice(-3).join("-").replace(/\.[a-z]+$/, "");
  process.on("exit", () => {
    // Same-thread inspector sessions answer synchronously, so this runs before the process is gone.
    session.post("Profiler.stop", (err, res) => {
      if (!err) writeFileSync(join(dir, `${name}-${process.pid}.cpuprofile`), JSON.stringify(res.profile));
    });
  });
}
