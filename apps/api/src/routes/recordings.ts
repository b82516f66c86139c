import { Router, type Response } from "express";
import { and, eq } from "drizzle-orm";
import { z } from "zod";
import { AppError, BadRequestError, NotFoundError, UnavailableError, isUuid, logged, schema, type Db, type Logger } from "@molecule/shared";
import { TapeToCast, readRecordingSettings, updateRecordingSettings, type RecordingSettings, type RecordingStore } from "@molecule/shared/recording/index";
import type { Authenticator } from "../auth.ts";
import { validationError } from "../error-handler.ts";
import { loadOwned, parseId } from "../workspaces/service.ts";

/** PATCH /orgs/current/recording: any subset of the org's recording settings. */
export const recordingSettingsBody = z
  .object({
    enabled: z.boolean().optional(),
    retention_days: z.number().int().min(1).max(3650).optional(),
    input: z.boolean().optional(),
  })
  .strict();

export const recordingSettingsJson = z.object({ enabled: z.boolean(), retention_days: z.number(), input: z.boolean() });

const toJson = (s: RecordingSettings): z.infer<typeof recordingSettingsJson> => ({ enabled: s.enabled, retention_days: s.retentionDays, input: s.input });

const READ_BYTES = 256 * 1024;
/** How often a live recording is looked at again for new bytes (a follower waits this long at most). */
const FOLLOW_POLL_MS = 250;
/** A session closed this long ago whose recording was never completed (its worker died): serve what there is. */
const ABANDONED_MS = 10_000;

export interface RecordingRoutesDeps {
  db: Db;
  auth: Authenticator;
  log: Logger;
  /** null: this node serves no recordings (MOLECULE_RECORDING_STORE=off). */
  store: RecordingStore | null;
}

/** The org's recording settings, and a session's .cast (followed live until the session ends). */
export function recordingRoutes(d: RecordingRoutesDeps): Router {
  const r = Router();

  r.get("/orgs/current/recording", async (req, res) => {
    const p = await d.auth.require(req);
    const s = await readRecordingSettings(d.db, p.orgId);
    if (!s) throw new NotFoundError("org");
    res.json(toJson(s));
  });

  r.patch("/orgs/current/recording", async (req, res) => {
    const p = await d.auth.require(req);
    const body = recordingSettingsBody.safeParse(req.body && typeof req.body === "object" && !Buffer.isBuffer(req.body) ? req.body : undefined);
    if (!body.success) throw validationError(body.error, "body");
    const b = body.data;
    const s = await updateRecordingSettings(d.db, p.orgId, {
      ...(b.enabled !== undefined ? { enabled: b.enabled } : {}),
      ...(b.retention_days !== undefined ? { retentionDays: b.retention_days } : {}),
      ...(b.input !== undefined ? { input: b.input } : {}),
    });
    if (!s) throw new NotFoundError("org");
    res.json(toJson(s));
  });

  r.get("/workspaces/:id/terminal/sessions/:sid/recording", async (req, res) => {
    const p = await d.auth.require(req);
    const id = parseId(req);
    const sid = String(req.params.sid);
    if (!isUuid(sid)) throw new BadRequestError("session id must be a UUID", [{ field: "sid" }], "bad_id");
    await loadOwned(d.db, p, id);
    const t = schema.terminalSessions;
    const load = async () => (await d.db.select().from(t).where(and(eq(t.id, sid), eq(t.workspaceId, id), eq(t.orgId, p.orgId))))[0];
    const row = await load();
    if (!row) throw new NotFoundError("session");
    if (!row.recordingKey) throw new AppError(404, "not_found", "this session has no recording (not recorded, or deleted by the retention sweep)");
    if (!d.store) throw new UnavailableError("this API node serves no recordings (MOLECULE_RECORDING_STORE=off)");
    const key = row.recordingKey;
    const store = d.store;
    res.status(200);
    res.setHeader("Content-Type", "application/x-asciicast");
    res.setHeader("Content-Disposition", `inline; filename="${sid}.cast"`);
    res.setHeader("Cache-Control", "no-store");
    res.flushHeaders();
    let gone = false;
    res.on("close", () => {
      gone = true;
    });
    // Stored as a tape (tape.ts), served as asciicast v2, converted as it is read.
    const cast = new TapeToCast();
    let offset = 0;
    let current = row;
    let recovered = false;
    for (;;) {
      if (gone) return;
      const chunk = await store.read(key, offset, READ_BYTES);
      if (chunk && chunk.length > 0) {
        offset += chunk.length;
        const out = cast.push(chunk);
        if (out.length > 0 && !res.write(out)) await drained(res);
        continue;
      }
      // Nothing new: the end is when the worker completed the file (and it is all sent), or when
      // the session closed long ago without that (its worker died: what there is, is all there is).
      // (`current` was read after the previous look at the store, so an empty read now is the true end.)
      const complete = current.recordingEndedAt !== null && chunk !== null;
      const abandoned = current.recordingEndedAt === null && current.closedAt !== null && Date.now() - current.closedAt.getTime() > ABANDONED_MS;
      if (abandoned && !recovered) {
        // Its worker died: what reached the store is made readable (S3: the uploaded parts), then served.
        recovered = true;
        await store.recover(key).catch(logged(d.log, "warn", "recovering an abandoned recording failed", { session_id: sid }));
        continue;
      }
      if (complete || abandoned) break;
      await new Promise((resolve) => setTimeout(resolve, FOLLOW_POLL_MS));
      const next = await load();
      if (!next?.recordingKey) break;
      current = next;
    }
    res.end(cast.end());
  });

  return r;
}

function drained(res: Response): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}
