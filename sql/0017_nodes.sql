-- 0017_nodes: the engines that share this database, and which engine owns each session.
--
-- Every engine registers under its node name (settings node.name, default the host name)
-- and beats every node.heartbeat_interval seconds; `ctc nodes` reads this table. The
-- table belongs to no tenant: nodes are the PBX administrator's, not an ERP's.
--
-- A session's `node` is the engine that created it: the column's default reads the
-- connection's `ctc.node` setting, which the engine's pool sets on every connection it
-- opens (asyncpg server_settings), so no writer has to carry it. Sessions written before
-- this migration, or by a tool without a node, say NULL.
--
-- Metadata-only on a live PBX's database: a new table, a nullable column added without a
-- default (no rewrite), then its default set (applies to new rows only).

SET LOCAL lock_timeout = '5s';

CREATE TABLE engine_node (
    name         text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    version      text NOT NULL,
    host         text NOT NULL,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    -- set by a graceful stop; NULL while it runs (or after it died without stopping)
    stopped_at   timestamptz,
    max_calls    integer CHECK (max_calls IS NULL OR max_calls > 0),
    -- what the node's health said of its Asterisk link (ARI) at the last beat
    asterisk     text NOT NULL DEFAULT 'unknown'
        CHECK (asterisk IN ('up', 'down', 'starting', 'disabled', 'unknown'))
);

ALTER TABLE click_to_call_session ADD COLUMN node text;
ALTER TABLE click_to_call_session
    ALTER COLUMN node SET DEFAULT NULLIF(current_setting('ctc.node', true), '');
