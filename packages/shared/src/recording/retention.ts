import type { Db } from "../db/client.ts";
import type { Logger } from "../logger.ts";
import { abandonedRecordings, expiredRecordings, recordingDeleted, recordingFinished } from "./recordings-db.ts";
import type { RecordingStore } from "./store.ts";

const BATCH = 100;

/**
 * One round of the retention sweep at `now`: deletes every recording whose session ended longer
 * ago than its org's retention (the setting as it is now), from the store and then from the row.
 * A store failure is logged and retried next round. Returns how many were deleted.
 */
export async function sweepRecordings(d: { db: Db; store: RecordingStore; log: Logger }, now: Date): Promise<number> {
  let deleted = 0;
  for (;;) {
    const batch = await expiredRecordings(d.db, now, BATCH);
    let progressed = 0;
    for (const r of batch) {
      try {
        await d.store.delete(r.key);
        await recordingDeleted(d.db, r.id, now);
        progressed++;
      } catch (err) {
        d.log.warn({ err, session_id: r.id }, "deleting an expired recording failed (the next sweep retries)");
      }
    }
    deleted += progressed;
    if (batch.length < BATCH || progressed === 0) return deleted;
  }
}

/** A closed session's recording left incomplete this long is taken as abandoned (its worker died). */
export const ABANDONED_AFTER_MS = 60_000;

/**
 * Completes recordings whose worker died before closing them: what reached the store is made
 * readable (S3: the uploaded parts) and the row marked complete with that size. Returns how many.
 */
export async function recoverRecordings(d: { db: Db; store: RecordingStore; log: Logger }, now: Date): Promise<number> {
  let recovered = 0;
  for (const r of await abandonedRecordings(d.db, new Date(now.getTime() - ABANDONED_AFTER_MS), BATCH)) {
    try {
      const bytes = await d.store.recover(r.key);
      if (bytes === null) await recordingDeleted(d.db, r.id, now);
      else await recordingFinished(d.db, r.id, { bytes, truncated: false });
      recovered++;
      d.log.warn({ session_id: r.id, bytes }, "recording recovered after its worker stopped (the last seconds may be missing)");
    } catch (err) {
      d.log.warn({ err, session_id: r.id }, "recovering an abandoned recording failed (the next sweep retries)");
    }
  }
  return recovered;
}
