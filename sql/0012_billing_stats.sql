-- ctc:no-transaction
-- 0012_billing_stats: what rating, billing lines and the manager's stats need.
--
-- Runs outside a transaction so the stats index builds CONCURRENTLY (a live PBX keeps
-- writing calls meanwhile); every statement is safe to run again from the start.
-- The ADD COLUMNs with constant defaults are metadata-only (no table rewrite).

-- A minimum amount per answered leg (the usage is raised to it; the connection fee is
-- added on top), beside min_duration_s (the minimum billed time of the pulse rule).
ALTER TABLE call_rate_config
    ADD COLUMN IF NOT EXISTS minimum_charge_minor bigint NOT NULL DEFAULT 0
        CHECK (minimum_charge_minor >= 0);

-- A billing line copies the whole rate it was charged at (a later rate change never
-- alters it), says why it is zero when no card matched (rate_config_id NULL, currency
-- XXX), and when it was last rated (a rerate rewrites uninvoiced lines).
ALTER TABLE call_usage_billing
    ADD COLUMN IF NOT EXISTS minimum_charge_minor bigint NOT NULL DEFAULT 0
        CHECK (minimum_charge_minor >= 0),
    ADD COLUMN IF NOT EXISTS min_duration_s integer,
    ADD COLUMN IF NOT EXISTS billing_increment_s integer,
    ADD COLUMN IF NOT EXISTS unrated_reason text,
    ADD COLUMN IF NOT EXISTS rated_at timestamptz NOT NULL DEFAULT now(),
    -- the call's end was not seen (0006: found gone after a restart): the talk time, and so
    -- the amount, is an upper bound the ERP may want to review before invoicing
    ADD COLUMN IF NOT EXISTS end_estimated boolean NOT NULL DEFAULT false;

-- The zone the stats' hour and day buckets are in, unless a request names another.
ALTER TABLE tenant
    ADD COLUMN IF NOT EXISTS timezone text NOT NULL DEFAULT 'UTC'
        CHECK (timezone ~ '^[A-Za-z][A-Za-z0-9_+/-]{0,63}$');

-- The stats scan a tenant's sessions created in a period and group them by status,
-- agent, provider, direction and time bucket: with every column they read in the index,
-- that is an index-only scan of the period instead of a visit to every row's heap page.
DROP INDEX CONCURRENTLY IF EXISTS click_to_call_session_stats_idx;
CREATE INDEX CONCURRENTLY click_to_call_session_stats_idx
    ON click_to_call_session (tenant_id, created_at)
    INCLUDE (status, direction, agent_id, agent_number, provider_id, connected_at, ring_ms,
             talk_ms);

-- The stats' cost totals and the monthly export read a tenant's lines by leg end.
-- (call_usage_billing_tenant_idx (tenant_id, billed_at) from 0002 serves both.)
