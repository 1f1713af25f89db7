-- 0013_transcripts: offline transcripts of recorded calls, queued in PostgreSQL.
--
-- A tenant turns transcription on with tenant.transcripts_enabled (off by default). Each
-- recorded call of such a tenant gets one call_transcript row when its recording ends
-- (the trigger below, in the same transaction as the recording.finished event, so no
-- recording is missed across restarts and the call's own path does no extra round trip).
-- The row is the job and, once done, the result: the daemon's worker claims due rows
-- with FOR UPDATE SKIP LOCKED (several engines never take the same one), holds a lease
-- while the decoder runs, and on failure puts the row back with a later run_after until
-- transcripts.max_attempts.
--
-- Adding a column with a constant default and a new table is metadata only; the trigger
-- is created on call_event under a short lock: safe on a live PBX.

SET LOCAL lock_timeout = '5s';

ALTER TABLE tenant ADD COLUMN transcripts_enabled boolean NOT NULL DEFAULT false;

CREATE TABLE call_transcript (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    session_id     uuid NOT NULL,
    -- the recording as the session named it when the job was queued
    recording_path text NOT NULL,
    state          text NOT NULL DEFAULT 'queued'
                       CHECK (state IN ('queued', 'running', 'completed', 'failed')),
    attempts       integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- not taken before this (a retry waits); a running row whose lease ran out is due again
    run_after      timestamptz NOT NULL DEFAULT now(),
    leased_until   timestamptz,
    last_error     text,
    -- what transcribed it: backend ('pocketsphinx', 'whisper') and model
    backend        text,
    model          text,
    language       text,
    transcript     text,
    -- [{"word": "hello", "start_ms": 120, "end_ms": 480, "confidence": 0.93}, ...]
    words          jsonb CHECK (words IS NULL OR jsonb_typeof(words) = 'array'),
    audio_ms       integer CHECK (audio_ms >= 0),
    -- wall-clock time the decoder took: decode_ms / audio_ms is its real-time factor
    decode_ms      integer CHECK (decode_ms >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz,
    UNIQUE (tenant_id, session_id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES click_to_call_session (tenant_id, id)
        ON DELETE CASCADE,
    CHECK (state <> 'completed' OR (transcript IS NOT NULL AND words IS NOT NULL))
);
-- the worker's claim: due rows only (a handful), oldest first
CREATE INDEX call_transcript_due_idx ON call_transcript (run_after)
    WHERE state IN ('queued', 'running');

CREATE FUNCTION call_transcript_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO call_transcript (tenant_id, session_id, recording_path)
    SELECT s.tenant_id, s.id, s.recording_path
      FROM click_to_call_session s JOIN tenant t ON t.id = s.tenant_id
     WHERE s.id = NEW.session_id
       AND t.transcripts_enabled
       AND s.recording_path LIKE '%.wav'          -- gsm recordings cannot be transcribed
       AND NOT (NEW.payload ? 'failure')
    ON CONFLICT (tenant_id, session_id) DO NOTHING;
    RETURN NULL;
END;
$$;

-- only recording.finished rows call the function (the WHEN is checked without it)
CREATE TRIGGER call_event_transcript_enqueue
    AFTER INSERT ON call_event
    FOR EACH ROW WHEN (NEW.event_type = 'recording.finished')
    EXECUTE FUNCTION call_transcript_enqueue();
