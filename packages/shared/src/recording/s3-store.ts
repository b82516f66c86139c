import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { z } from "zod";
import { checkKey, type RecordingSink, type RecordingStore } from "./store.ts";

/** Next to an upload in progress: its id and the parts uploaded so far, so a crashed writer's parts can be completed. */
const PARTS_SUFFIX = ".parts.json";
const uploadState = z.object({ uploadId: z.string().min(1), parts: z.array(z.object({ PartNumber: z.number().int().min(1), ETag: z.string() })) });

export interface S3StoreOptions {
  bucket: string;
  /** Prepended to every key (e.g. "recordings/"). */
  prefix: string;
  region: string;
  /** An S3-compatible endpoint (MinIO, a local test server); AWS's own when absent. */
  endpoint?: string;
  /** Static credentials; the SDK's default chain (role, env, profile) when absent. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  forcePathStyle?: boolean;
  /** Part size of the multipart upload: at most this much of a session is in memory. S3 wants ≥ 5 MiB. */
  partBytes: number;
}

/**
 * Recordings as S3 objects, written by multipart upload one part at a time: a long session is
 * never held in memory, and a worker crash loses at most the part being filled. An object can be
 * read once its upload is complete (the API holds a live follower until then).
 */
export function createS3Store(o: S3StoreOptions): RecordingStore {
  const client = new S3Client({
    region: o.region,
    ...(o.endpoint ? { endpoint: o.endpoint } : {}),
    ...(o.credentials ? { credentials: o.credentials } : {}),
    forcePathStyle: o.forcePathStyle ?? Boolean(o.endpoint),
  });
  const keyOf = (key: string) => `${o.prefix}${checkKey(key)}`;
  return {
    kind: "s3",
    create(key) {
      return new S3Sink(client, o.bucket, keyOf(key), o.partBytes);
    },
    async read(key, from, max) {
      try {
        const r = await client.send(new GetObjectCommand({ Bucket: o.bucket, Key: keyOf(key), Range: `bytes=${from}-${from + max - 1}` }));
        return Buffer.from(await r.Body!.transformToByteArray());
      } catch (err) {
        const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
        if (e.name === "NoSuchKey" || e.$metadata?.httpStatusCode === 404) return null;
        // A range that starts at the end: nothing more yet.
        if (e.name === "InvalidRange" || e.$metadata?.httpStatusCode === 416) return Buffer.alloc(0);
        throw err;
      }
    },
    async delete(key) {
      await client.send(new DeleteObjectCommand({ Bucket: o.bucket, Key: keyOf(key) }));
    },
    async recover(key) {
      const Key = keyOf(key);
      // The sink's own account of its upload (ListParts is not everywhere: not in every S3-compatible server).
      let state: { uploadId: string; parts: { PartNumber: number; ETag: string }[] } | null = null;
      try {
        const r = await client.send(new GetObjectCommand({ Bucket: o.bucket, Key: `${Key}${PARTS_SUFFIX}` }));
        state = uploadState.parse(JSON.parse(await r.Body!.transformToString()));
      } catch (err) {
        const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
        if (!(e.name === "NoSuchKey" || e.$metadata?.httpStatusCode === 404)) throw err;
      }
      if (state) {
        if (state.parts.length === 0) await client.send(new AbortMultipartUploadCommand({ Bucket: o.bucket, Key, UploadId: state.uploadId }));
        // The parts that reached S3 are the recording up to the crash (at most the part being filled is lost).
        else await client.send(new CompleteMultipartUploadCommand({ Bucket: o.bucket, Key, UploadId: state.uploadId, MultipartUpload: { Parts: state.parts } }));
        await client.send(new DeleteObjectCommand({ Bucket: o.bucket, Key: `${Key}${PARTS_SUFFIX}` }));
      }
      try {
        return (await client.send(new HeadObjectCommand({ Bucket: o.bucket, Key }))).ContentLength ?? null;
      } catch (err) {
        const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
        if (e.name === "NotFound" || e.$metadata?.httpStatusCode === 404) return null;
        throw err;
      }
    },
  };
}

class S3Sink implements RecordingSink {
  private parts: Buffer[] = [];
  private partsBytes = 0;
  private readonly done: { PartNumber: number; ETag: string }[] = [];
  private readonly uploadId: Promise<string>;
  private chain: Promise<void>;
  error: unknown = null;

  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    private readonly key: string,
    private readonly partBytes: number,
  ) {
    this.uploadId = client
      .send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: "application/x-asciicast" }))
      .then((r) => r.UploadId!);
    this.chain = this.uploadId.then(
      () => undefined,
      (err: unknown) => {
        this.error = err;
      },
    );
  }

  write(data: Buffer): void {
    if (this.error) return;
    this.parts.push(data);
    this.partsBytes += data.length;
    if (this.partsBytes >= this.partBytes) this.uploadPart();
  }

  private uploadPart(): void {
    if (this.parts.length === 0) return;
    const body = Buffer.concat(this.parts, this.partsBytes);
    this.parts = [];
    this.partsBytes = 0;
    this.chain = this.chain.then(async () => {
      if (this.error) return;
      try {
        const PartNumber = this.done.length + 1;
        const r = await this.client.send(new UploadPartCommand({ Bucket: this.bucket, Key: this.key, UploadId: await this.uploadId, PartNumber, Body: body }));
        this.done.push({ PartNumber, ETag: r.ETag! });
        // One small object per part (every partBytes of output): what recover() needs after a crash.
        await this.client.send(
          new PutObjectCommand({ Bucket: this.bucket, Key: `${this.key}${PARTS_SUFFIX}`, Body: JSON.stringify({ uploadId: await this.uploadId, parts: this.done }), ContentType: "application/json" }),
        );
      } catch (err) {
        this.error = err;
      }
    });
  }

  async close(): Promise<void> {
    this.uploadPart();
    await this.chain;
    if (this.error) {
      const uploadId = await this.uploadId.catch(() => null);
      if (uploadId) {
        try {
          await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId: uploadId }));
        } catch (abortErr) {
          throw new AggregateError([this.error, abortErr], "the recording upload failed, and so did aborting it (a lifecycle rule removes it)");
        }
      }
      throw this.error;
    }
    await this.client.send(
      new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId: await this.uploadId, MultipartUpload: { Parts: this.done } }),
    );
    if (this.done.length > 0) await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: `${this.key}${PARTS_SUFFIX}` }));
  }
}
