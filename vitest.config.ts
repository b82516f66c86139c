import { defineConfig } from "vitest/config";

/**
 * Two files start hundreds of shells at once and saturate a 2-core machine for
 * tens of seconds: they run last, one at a time, so the timing of every other
 * test (heartbeats, prompts, fake CLIs starting) never depends on them.
 */
const saturating = ["test/concurrency.test.ts", "bench/bench.test.ts"];
/**
 * The real Docker Engine (images built here, a compose deployment, workspace containers):
 * minutes of image builds on a cold cache and whole deployments, so after everything else and
 * one file at a time. They skip without an engine, except under CI=true (test/docker/real-engine.ts).
 */
const dockerEngine = ["test/docker/real-docker.test.ts", "test/compose-deploy.test.ts"];

export default defineConfig({
  test: {
    globalSetup: ["test/global-setup.ts"],
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    projects: [
      {
        extends: true,
        test: {
          name: "suite",
          include: ["apps/*/src/**/*.test.ts", "packages/*/src/**/*.test.ts", "test/**/*.test.ts", "bench/**/*.test.ts"],
          exclude: ["**/node_modules/**", ...saturating, ...dockerEngine],
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: "saturating",
          include: saturating,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
      {
        extends: true,
        test: {
          name: "docker",
          include: dockerEngine,
          fileParallelism: false,
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
