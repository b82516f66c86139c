import type { Db } from "../db/client.ts";
import type { Logger } from "../logger.ts";
import { expiredRecordings, recordingDeleted } from "./recordings-db.ts";
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
