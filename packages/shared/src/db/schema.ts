import { sql } from "drizzle-orm";
import {
  bigint,
  bigserial,
  boolean,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uuid,
} from "drizzle-orm/pg-core";

export const orgs = pgTable("orgs", {
  id: uuid("id").primaryKey().defaultRandom(),
  name: text("name").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  /** Terminal sessions are recorded (asciicast v2) unless the org turns it off. */
  recordingEnabled: boolean("recording_enabled").notNull().default(true),
  /** Recordings are deleted this many days after their session ended (the retention sweep). */
  recordingRetentionDays: integer("recording_retention_days").notNull().default(30),
  /** Keystrokes ("i" events) are recorded too: off unless the org asks. */
  recordingInput: boolean("recording_input").notNull().default(false),
});

/** Tokens are stored only as a SHA-256 hash plus a short display prefix. */
export const apiTokens = pgTable(
  "api_tokens",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    orgId: uuid("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    name: text("name").notNull().default("default"),
    prefix: text("prefix").notNull(),
    hash: text("hash").notNull().unique(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    revokedAt: timestamp("revoked_at", { withTimezone: true }),
    lastUsedAt: timestamp("last_used_at", { withTimezone: true }),
  },
  (t) => [index("api_tokens_org_idx").on(t.orgId)],
);

export const workspaces = pgTable(
  "workspaces",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    orgId: uuid("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    runtime: text("runtime").notNull(),
    tier: integer("tier").notNull(),
    status: text("status").notNull(),
    provider: text("provider").notNull(),
    instanceId: text("instance_id"),
    error: text("error"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
    readyAt: timestamp("ready_at", { withTimezone: true }),
  },
  (t) => [
    index("workspaces_org_created_idx").on(t.orgId, t.createdAt.desc(), t.id.desc()),
    index("workspaces_status_idx").on(t.status, t.updatedAt),
  ],
);

/** Every status transition, with its timestamp: the lifecycle audit trail. */
export const workspaceEvents = pgTable(
  "workspace_events",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    workspaceId: uuid("workspace_id")
      .notNull()
      .references(() => workspaces.id, { onDelete: "cascade" }),
    fromStatus: text("from_status"),
    toStatus: text("to_status").notNull(),
    /** Set on a provisioning step (queued, creating_sandbox, …; see provision-steps.ts); null on a status transition. */
    step: text("step"),
    message: text("message"),
    at: timestamp("at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("workspace_events_ws_idx").on(t.workspaceId, t.id)],
);

/**
 * Idempotency-Key of POST /workspaces: a retried create with the same key (per org) returns the
 * workspace the first one made. `requestHash` is of the validated body; keys count for 24 h.
 */
export const idempotencyKeys = pgTable(
  "idempotency_keys",
  {
    orgId: uuid("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    key: text("key").notNull(),
    requestHash: text("request_hash").notNull(),
    workspaceId: uuid("workspace_id")
      .notNull()
      .references(() => workspaces.id, { onDelete: "cascade" }),
    statusCode: integer("status_code").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.orgId, t.key] }), index("idempotency_keys_created_idx").on(t.createdAt)],
);

/** Terminal audit: who opened a shell into which workspace and instance, when, for how long. */
export const terminalSessions = pgTable(
  "terminal_sessions",
  {
    id: uuid("id").primaryKey(),
    orgId: uuid("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    workspaceId: uuid("workspace_id")
      .notNull()
      .references(() => workspaces.id, { onDelete: "cascade" }),
    tokenId: uuid("token_id"),
    tokenPrefix: text("token_prefix"),
    clientAddr: text("client_addr"),
    userAgent: text("user_agent"),
    workerId: text("worker_id"),
    provider: text("provider").notNull(),
    instanceId: text("instance_id"),
    osUser: text("os_user"),
    /** The argv of an exec session (`command` on the terminal URL); null for a login shell. */
    command: jsonb("command").$type<string[]>(),
    /** false for an exec session run without a PTY (pipes). */
    pty: boolean("pty").notNull().default(true),
    openedAt: timestamp("opened_at", { withTimezone: true }).notNull().defaultNow(),
    closedAt: timestamp("closed_at", { withTimezone: true }),
    closeReason: text("close_reason"),
    exitCode: integer("exit_code"),
    exitSignal: text("exit_signal"),
    bytesIn: bigint("bytes_in", { mode: "number" }).notNull().default(0),
    bytesOut: bigint("bytes_out", { mode: "number" }).notNull().default(0),
    /** The recording's key in the recording store; null when the session was not recorded (or it was deleted). */
    recordingKey: text("recording_key"),
    /** Bytes of the .cast file written so far (final once recording_ended_at is set). */
    recordingBytes: bigint("recording_bytes", { mode: "number" }),
    /** The size cap was reached: the file ends with a marker saying so. */
    recordingTruncated: boolean("recording_truncated").notNull().default(false),
    /** The recording is complete in the store (the worker closed it). */
    recordingEndedAt: timestamp("recording_ended_at", { withTimezone: true }),
    /** The retention sweep deleted the recording. */
    recordingDeletedAt: timestamp("recording_deleted_at", { withTimezone: true }),
  },
  (t) => [
    index("terminal_sessions_recording_idx").on(t.closedAt).where(sql`recording_key is not null`),
    index("terminal_sessions_ws_idx").on(t.workspaceId, t.openedAt.desc()),
    index("terminal_sessions_open_idx").on(t.openedAt).where(sql`closed_at is null`),
  ],
);

/** Who watched which session (a live viewer, mode=view), from when until when. */
export const terminalSessionViewers = pgTable(
  "terminal_session_viewers",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    sessionId: uuid("session_id")
      .notNull()
      .references(() => terminalSessions.id, { onDelete: "cascade" }),
    orgId: uuid("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    tokenId: uuid("token_id"),
    tokenPrefix: text("token_prefix"),
    clientAddr: text("client_addr"),
    startedAt: timestamp("started_at", { withTimezone: true }).notNull().defaultNow(),
    endedAt: timestamp("ended_at", { withTimezone: true }),
  },
  (t) => [index("terminal_session_viewers_session_idx").on(t.sessionId, t.startedAt)],
);

export type Org = typeof orgs.$inferSelect;
export type ApiToken = typeof apiTokens.$inferSelect;
export type Workspace = typeof workspaces.$inferSelect;
export type WorkspaceEvent = typeof workspaceEvents.$inferSelect;
export type IdempotencyKey = typeof idempotencyKeys.$inferSelect;
export type TerminalSession = typeof terminalSessions.$inferSelect;
