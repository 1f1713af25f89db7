-- 0018_event_feed: every engine sees the call events the other engines commit.
--
-- Each engine publishes the events it commits to its own in-process bus (SSE streams, the
-- callback notifier). With several engines on one database, an engine's event feed
-- (engine/store/event_feed.py) reads the rows the others committed and publishes them too:
--
--   * call_event.node says which engine wrote the row (the connection's ctc.node, set by
--     the engine's pool; NULL for tools), so a feed skips its own engine's rows;
--   * after every INSERT statement on call_event, NOTIFY ctc_call_events with the writer's
--     node name wakes the other engines' feeds at commit (one notification per statement,
--     not per row; PostgreSQL folds equal notifications of one transaction). The table is
--     the truth: a feed also reads on a timer, so a lost notification only delays.
--
-- Metadata-only on a live PBX's database: a nullable column without a default (no rewrite),
-- its default for new rows, a function and a statement-level trigger.

SET LOCAL lock_timeout = '5s';

ALTER TABLE call_event ADD COLUMN node text;
ALTER TABLE call_event ALTER COLUMN node SET DEFAULT NULLIF(current_setting('ctc.node', true), '');

CREATE FUNCTION call_event_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ctc_call_events', coalesce(current_setting('ctc.node', true), ''));
    RETURN NULL;
END;
$$;

CREATE TRIGGER call_event_notify AFTER INSERT ON call_event
    FOR EACH STATEMENT EXECUTE FUNCTION call_event_notify();
