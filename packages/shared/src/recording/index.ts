export * from "./asciicast.ts";
export * from "./tape.ts";
export * from "./store.ts";
export * from "./fs-store.ts";
export type { S3StoreOptions } from "./s3-store.ts";
export * from "./settings.ts";
export * from "./recordings-db.ts";
export * from "./retention.ts";
