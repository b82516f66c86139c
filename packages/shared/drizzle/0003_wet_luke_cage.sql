CREATE TABLE "terminal_session_viewers" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"session_id" uuid NOT NULL,
	"org_id" uuid NOT NULL,
	"token_id" uuid,
	"token_prefix" text,
	"client_addr" text,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"ended_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "orgs" ADD COLUMN "recording_enabled" boolean DEFAULT true NOT NULL;--> statement-breakpoint
ALTER TABLE "orgs" ADD COLUMN "recording_retention_days" integer DEFAULT 30 NOT NULL;--> statement-breakpoint
ALTER TABLE "orgs" ADD COLUMN "recording_input" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "terminal_sessions" ADD COLUMN "recording_key" text;--> statement-breakpoint
ALTER TABLE "terminal_sessions" ADD COLUMN "recording_bytes" bigint;--> statement-breakpoint
ALTER TABLE "terminal_sessions" ADD COLUMN "recording_truncated" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "terminal_sessions" ADD COLUMN "recording_ended_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "terminal_sessions" ADD COLUMN "recording_deleted_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "terminal_session_viewers" ADD CONSTRAINT "terminal_session_viewers_session_id_terminal_sessions_id_fk" FOREIGN KEY ("session_id") REFERENCES "public"."terminal_sessions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "terminal_session_viewers" ADD CONSTRAINT "terminal_session_viewers_org_id_orgs_id_fk" FOREIGN KEY ("org_id") REFERENCES "public"."orgs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "terminal_session_viewers_session_idx" ON "terminal_session_viewers" USING btree ("session_id","started_at");--> statement-breakpoint
CREATE INDEX "terminal_sessions_recording_idx" ON "terminal_sessions" USING btree ("closed_at") WHERE recording_key is not null;