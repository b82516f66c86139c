import { isAbsolute } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { createFsStore } from "./fs-store.ts";
import type { RecordingStore } from "./store.ts";

/** The fs store's root when MOLECULE_RECORDING_DIR is not set: the repository's .molecule/recordings (API and worker agree). */
export const DEFAULT_RECORDING_DIR = fileURLToPath(new URL("../../../../.molecule/recordings", import.meta.url));

const int = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);

/** The recording settings both the API (reads, retention) and the worker (writes) take from the environment. */
export const recordingEnvSchema = z.object({
  /** fs (default, files under MOLECULE_RECORDING_DIR), s3, or off (this process records and serves nothing). */
  MOLECULE_RECORDING_STORE: z.enum(["fs", "s3", "off"]).default("fs"),
  MOLECULE_RECORDING_DIR: z.string().refine(isAbsolute, "must be an absolute path").optional(),
  /** Per-session cap of the .cast file; past it the file ends with a marker (default 64 MiB). */
  MOLECULE_RECORDING_MAX_BYTES: int(64 * 1024 * 1024, 4096),
  MOLECULE_RECORDING_S3_BUCKET: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/).optional(),
  MOLECULE_RECORDING_S3_PREFIX: z.string().regex(/^[A-Za-z0-9._/-]{0,200}$/).default("recordings/"),
  MOLECULE_RECORDING_S3_REGION: z.string().default("us-east-1"),
  MOLECULE_RECORDING_S3_ENDPOINT: z.string().url().optional(),
  MOLECULE_RECORDING_S3_ACCESS_KEY_ID: z.string().optional(),
  MOLECULE_RECORDING_S3_SECRET_ACCESS_KEY: z.string().optional(),
  /** Multipart part size (S3 needs at least 5 MiB). */
  MOLECULE_RECORDING_S3_PART_BYTES: int(8 * 1024 * 1024, 5 * 1024 * 1024),
});
export type RecordingEnv = z.infer<typeof recordingEnvSchema>;

export interface RecordingConfig {
  store: { kind: "fs"; dir: string } | { kind: "s3"; bucket: string; prefix: string; region: string; endpoint?: string; credentials?: { accessKeyId: string; secretAccessKey: string }; partBytes: number };
  maxBytes: number;
}

/** The environment's recording settings as config; `defaultDir` is the fs store's root when none is set. */
export function recordingConfigFromEnv(e: RecordingEnv, defaultDir = DEFAULT_RECORDING_DIR): RecordingConfig | null {
  if (e.MOLECULE_RECORDING_STORE === "off") return null;
  if (e.MOLECULE_RECORDING_STORE === "fs") return { store: { kind: "fs", dir: e.MOLECULE_RECORDING_DIR ?? defaultDir }, maxBytes: e.MOLECULE_RECORDING_MAX_BYTES };
  if (!e.MOLECULE_RECORDING_S3_BUCKET) throw new Error("MOLECULE_RECORDING_STORE=s3 needs MOLECULE_RECORDING_S3_BUCKET");
  const id = e.MOLECULE_RECORDING_S3_ACCESS_KEY_ID;
  const secret = e.MOLECULE_RECORDING_S3_SECRET_ACCESS_KEY;
  if ((id === undefined) !== (secret === undefined)) throw new Error("set both MOLECULE_RECORDING_S3_ACCESS_KEY_ID and MOLECULE_RECORDING_S3_SECRET_ACCESS_KEY, or neither");
  return {
    store: {
      kind: "s3",
      bucket: e.MOLECULE_RECORDING_S3_BUCKET,
      prefix: e.MOLECULE_RECORDING_S3_PREFIX,
      region: e.MOLECULE_RECORDING_S3_REGION,
      ...(e.MOLECULE_RECORDING_S3_ENDPOINT ? { endpoint: e.MOLECULE_RECORDING_S3_ENDPOINT } : {}),
      ...(id && secret ? { credentials: { accessKeyId: id, secretAccessKey: secret } } : {}),
      partBytes: e.MOLECULE_RECORDING_S3_PART_BYTES,
    },
    maxBytes: e.MOLECULE_RECORDING_MAX_BYTES,
  };
}

/** The S3 SDK is loaded only when the S3 store is configured (it is large, and most processes never need it). */
export async function createRecordingStore(c: RecordingConfig["store"]): Promise<RecordingStore> {
  if (c.kind === "fs") return createFsStore(c.dir);
  const { createS3Store } = await import("./s3-store.ts");
  return createS3Store(c);
}
