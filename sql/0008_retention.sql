-- 0008_retention: what the retention prune (engine/store/retention.py) needs.
--
-- Written to be applied to a live PBX's database: every statement here is either
-- metadata-only (a nullable column without a default, a function body) or takes its lock
-- for milliseconds; lock_timeout makes the file fail (nothing applied, `ctc db migrate`
-- can be run again) rather than queue calls' writes behind a long-running query.
-- The indexes the prune needs are built without blocking writes in 0009.

SET LOCAL lock_timeout = '5s';

-- call_event stays append-only for everyone but the retention prune, which deletes rows
-- older than retention.call_events_days in a transaction that says so
-- (SET LOCAL ctc.prune = 'retention'). A guard against accidents, not a permission: the
-- table's owner can drop the trigger anyway.
CREATE OR REPLACE FUNCTION call_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- deleting a session or tenant cascades here (from inside the FK trigger, depth > 1);
    -- the retention prune deletes old rows; any other UPDATE or DELETE is refused
    IF TG_OP = 'DELETE' AND (pg_trigger_depth() > 1
                             OR current_setting('ctc.prune', true) = 'retention') THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'call_event is append-only (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

-- The prune deletes a steady trickle of old rows; their space is reused by new rows only
-- once VACUUM has passed. By default autovacuum comes when a fifth of the table is dead
-- rows (two million at ten million events), so the table would settle ~20 % above what
-- retention keeps; at 2 % it settles close to it. (SHARE UPDATE EXCLUSIVE: inserts go on.)
ALTER TABLE call_event SET (autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE callback_outbox SET (autovacuum_vacuum_scale_factor = 0.02);

-- A recording file deleted (by retention, or found missing when retention came) leaves
-- the session row saying so: recording_path stays (what was recorded, where), and these
-- say when and why the file is gone, so the API shows "deleted by retention" instead of
-- a broken link.
ALTER TABLE click_to_call_session
    ADD COLUMN recording_deleted_at     timestamptz,
    ADD COLUMN recording_deleted_reason text CHECK (recording_deleted_reason IN
                                            ('retention', 'missing'));

COMMENT ON COLUMN click_to_call_session.recording_deleted_reason IS
    'retention: the file was deleted by the recording retention policy; missing: the file '
    'was already gone when retention came for it';
