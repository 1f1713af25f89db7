-- ctc:no-transaction
-- 0007: find ended calls whose recording's end was never stored.
--
-- Asterisk 22 sometimes sends no RecordingFinished for the recording of a bridge it
-- destroys (measured: 1 to 40 calls in 500 held 30 s, the file stored), and no event at
-- all reaches an engine whose link is down. The engine asks ARI about such recordings; the
-- resync after a (re)start finds the ones an earlier engine left waiting through this
-- index, which holds only those rows (a handful), not every session. Built CONCURRENTLY, so
-- a live PBX keeps writing calls while it builds; dropped first, since a failed concurrent
-- build leaves an invalid index behind and this file then runs again from the start.

DROP INDEX CONCURRENTLY IF EXISTS click_to_call_session_recording_unsettled_idx;
CREATE INDEX CONCURRENTLY click_to_call_session_recording_unsettled_idx
    ON click_to_call_session (ended_at)
    WHERE recording_path IS NOT NULL AND recording_duration_ms IS NULL;
