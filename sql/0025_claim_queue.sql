-- 0025_claim_queue: calls placed on any node, controls sent to any node, owner failover.
--
-- Claim queue. With node.claim_queue on, `initiate` stores a click-to-call with no owner
-- (node NULL, status queued); an engine with capacity claims it (UPDATE ... FOR UPDATE
-- SKIP LOCKED sets node and claimed_at) and only then dials it, so a call is dialled by
-- the one node that claimed it. The insert of such a row, or a row handed back to the
-- queue (its node stopped heartbeating), NOTIFYs ctc_call_queue: the engines' claimers
-- wake at commit. The table is the truth: a claimer also looks on a timer, so a lost
-- notification only delays.
--
-- Node commands. A control or transfer sent to an engine that does not own the session is
-- written to node_command for its owner (NOTIFY ctc_node_commands, payload the owner's
-- name); the owner carries it out and writes the result (NOTIFY ctc_node_results, payload
-- the command's id); the engine that asked waits for it, bounded (expires_at). Rows are
-- short-lived: the engines delete answered and expired ones.
--
-- Metadata-only on a live PBX's database: a nullable column without a default (no
-- rewrite), row triggers whose WHEN clause skips every other insert and update, and a
-- new table.

SET LOCAL lock_timeout = '5s';

ALTER TABLE click_to_call_session ADD COLUMN claimed_at timestamptz;

CREATE FUNCTION call_queue_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ctc_call_queue', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER call_queue_insert AFTER INSERT ON click_to_call_session
    FOR EACH ROW WHEN (NEW.node IS NULL AND NEW.status = 'queued'
        AND NEW.direction = 'click_to_call')
    EXECUTE FUNCTION call_queue_notify();

CREATE TRIGGER call_queue_requeue AFTER UPDATE OF node ON click_to_call_session
    FOR EACH ROW WHEN (NEW.node IS NULL AND OLD.node IS NOT NULL AND NEW.status = 'queued'
        AND NEW.direction = 'click_to_call')
    EXECUTE FUNCTION call_queue_notify();

CREATE TABLE node_command (
    id          bigserial PRIMARY KEY,
    node        text NOT NULL,          -- the owner that is to carry it out
    sent_by     text,                   -- the engine that asked (NULL: a tool)
    tenant_id   uuid NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    session_id  uuid NOT NULL,
    command     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,   -- not taken by then: never carried out
    taken_at    timestamptz,            -- the owner took it (or the sender withdrew it)
    done_at     timestamptz,
    result      jsonb
);

CREATE INDEX node_command_pending_idx ON node_command (node, id) WHERE taken_at IS NULL;
