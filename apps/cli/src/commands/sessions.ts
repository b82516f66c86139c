import { resolveWorkspace, type SessionRow } from "../api.ts";
import type { Context } from "../context.ts";
import { EXIT, usageError } from "../errors.ts";
import { ago, bytes, duration, printJson, printTable } from "../output.ts";

/** `molecule sessions <ws>`: who opened a shell into the workspace, when, for how long, how it ended. */
export async function listSessions(ctx: Context, ref: string, flags: { limit?: string }): Promise<number> {
  const limit = flags.limit === undefined ? 50 : Number(flags.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw usageError("--limit: an integer 1..1000");
  const client = ctx.client();
  const ws = await resolveWorkspace(client, ref);
  const rows: SessionRow[] = [];
  let cursor: string | undefined;
  while (rows.length < limit) {
    const page = await client.sessions(ws.id, Math.min(200, limit - rows.length), cursor);
    rows.push(...page.sessions);
    if (!page.next_cursor) break;
    cursor = page.next_cursor;
  }
  if (ctx.json) printJson({ sessions: rows });
  else if (!rows.length) process.stderr.write(`No terminal sessions in ${ws.name} yet\n`);
  else
    printTable(
      ["ID", "OPENED", "DURATION", "END", "EXIT", "IN", "OUT", "TOKEN", "CLIENT", "COMMAND"],
      rows.map((s) => [
        s.id,
        ago(s.opened_at),
        s.closed_at ? duration(s.duration_ms) : "open",
        s.close_reason,
        s.exit_code ?? s.exit_signal,
        bytes(s.bytes_in),
        bytes(s.bytes_out),
        s.token_prefix,
        s.client_addr,
        s.command ? JSON.stringify(s.command) : "(shell)",
      ]),
    );
  return EXIT.ok;
}
