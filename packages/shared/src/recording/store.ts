import { isUuid } from "../ids.ts";

/**
 * Where recordings live. Writes are appends through a sink (never the whole file in memory);
 * reads are by byte range, so the API can serve and follow a file while it grows.
 */
export interface RecordingStore {
  readonly kind: "fs" | "s3";
  /** Starts a new recording under `key` (an existing one is replaced). */
  create(key: string): RecordingSink;
  /**
   * Up to `max` bytes of `key` from byte `from` (empty at the end so far); null while the
   * recording cannot be read (it does not exist, or the S3 upload is not complete yet).
   */
  read(key: string, from: number, max: number): Promise<Buffer | null>;
  delete(key: string): Promise<void>;
  /**
   * A recording whose writer died (its worker crashed): makes what reached the store readable and
   * returns its size, or null when nothing of it is there. S3 completes the upload with the parts
   * that were uploaded; a file is readable as it is.
   */
  recover(key: string): Promise<number | null>;
}

export interface RecordingSink {
  /** Never blocks and never throws: bytes are handed to the store in the background (the sink keeps `data`). */
  write(data: Buffer): void;
  /** Everything written is in the store; the recording is complete. */
  close(): Promise<void>;
  /** The first failure the sink met (writes after it are dropped), if any. */
  readonly error: unknown;
}

/**
 * `<org>/<workspace>/<session>.tape` (the stored format, tape.ts; the API serves it as .cast): built
 * only from UUIDs, so a key never leaves the store's root.
 */
export function recordingKey(orgId: string, workspaceId: string, sessionId: string): string {
  for (const id of [orgId, workspaceId, sessionId]) if (!isUuid(id)) throw new Error(`not a UUID: ${JSON.stringify(id)}`);
  return `${orgId}/${workspaceId}/${sessionId}.tape`;
}

const KEY_RE = /^[0-9a-f-]{36}\/[0-9a-f-]{36}\/[0-9a-f-]{36}\.tape$/;

/** Keys come back from the database: check them again before they name a file. */
export function checkKey(key: string): string {
  if (!KEY_RE.test(key)) throw new Error(`not a recording key: ${JSON.stringify(key)}`);
  return key;
}
