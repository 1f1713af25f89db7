-- ctc:no-transaction
-- 0009_retention_indexes: the indexes that make each retention batch cheap, built
-- CONCURRENTLY so a live PBX keeps writing calls while they build (a plain CREATE INDEX
-- blocks every insert into the table until it is done). Each build is preceded by a drop
-- of the same name: a failed concurrent build leaves an invalid index behind, and this
-- file runs again from the start.

-- Deleting a call_event row makes PostgreSQL look for outbox rows pointing at it (the
-- foreign key's ON DELETE CASCADE), and the prune keeps every event an outbox row still
-- points at: without this index each of those is a scan of the whole outbox.
DROP INDEX CONCURRENTLY IF EXISTS callback_outbox_event_idx;
CREATE INDEX CONCURRENTLY callback_outbox_event_idx ON callback_outbox (event_id);

-- The recordings retention looks for ended calls whose file is still there.
DROP INDEX CONCURRENTLY IF EXISTS click_to_call_session_recording_kept_idx;
CREATE INDEX CONCURRENTLY click_to_call_session_recording_kept_idx
    ON click_to_call_session (ended_at)
    WHERE recording_path IS NOT NULL AND recording_deleted_at IS NULL;
