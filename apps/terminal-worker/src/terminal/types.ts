import type { IPty } from "node-pty";

/** Starts a PTY (node-pty's spawn, or a wrapper: metrics.ts counts its bytes). */
export type SpawnPty = (file: string, args: string[], opts: { name: string; cols: number; rows: number; cwd?: string; env: Record<string, string>; encoding: null }) => IPty;

/** Resolves when it is this caller's turn to spawn (spawn-turns.ts). */
export type SpawnTurn = () => Promise<void>;
