import type { SpawnTurn } from "./types.ts";

/**
 * Spawning a PTY forks this process synchronously, and on a busy machine each
 * fork takes tens of milliseconds (more while other new shells start). A burst
 * of opens resumed in one event-loop turn would spawn them back to back and
 * starve the heartbeat for seconds (the API would report the worker lost), so
 * spawns take turns: one per event-loop iteration, with timers and I/O between.
 * One queue per runner (its sessions share it), none at module level.
 */
export function createSpawnTurns(): SpawnTurn {
  let queue: Promise<void> = Promise.resolve();
  return () => {
    const turn = queue.then(() => new Promise<void>((resolve) => setImmediate(resolve)));
    queue = turn;
    return turn;
  };
}
