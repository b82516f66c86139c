ALTER TABLE "terminal_sessions" ADD COLUMN "command" jsonb;--> statement-breakpoint
ALTER TABLE "terminal_sessions" ADD COLUMN "pty" boolean DEFAULT true NOT NULL;