-- 0012_billing_stats: what rating, billing lines and the manager's stats need.
--
-- Applied to a live PBX's database: every ADD COLUMN here has a constant default, which
-- is metadata-only (no table rewrite), and lock_timeout makes the file fail (nothing
-- applied, run `ctc db migrate` again) rather than queue calls' writes behind a long query.

SET LOCAL lock_timeout = '5s';

-- A minimum amount per answered leg (the usage is raised to it; the connection fee is
-- added on top), beside min_duration_s (the minimum billed time of the pulse rule).
ALTER TABLE call_rate_config
    ADD COLUMN minimum_charge_minor bigint NOT NULL DEFAULT 0
        CHECK (minimum_charge_minor >= 0);

-- A billing line copies the whole rate it was charged at (a later rate change never
-- alters it), says why it is zero when no card matched (rate_config_id NULL, currency
-- XXX), and when it was last rated (a rerate rewrites uninvoiced lines).
ALTER TABLE call_usage_billing
    ADD COLUMN minimum_charge_minor bigint NOT NULL DEFAULT 0
        CHECK (minimum_charge_minor >= 0),
    ADD COLUMN min_duration_s integer,
    ADD COLUMN billing_increment_s integer,
    ADD COLUMN unrated_reason text,
    ADD COLUMN rated_at timestamptz NOT NULL DEFAULT now(),
    -- the call's end was not seen (0006: found gone after a restart): the talk time, and so
    -- the amount, is an upper bound the ERP may want to review before invoicing
    ADD COLUMN end_estimated boolean NOT NULL DEFAULT false;

-- The zone the stats' hour and day buckets are in, unless a request names another.
ALTER TABLE tenant
    ADD COLUMN timezone text NOT NULL DEFAULT 'UTC'
        CHECK (timezone ~ '^[A-Za-z][A-Za-z0-9_+/-]{0,63}$');

-- The stats need no index of their own: a period is a range of the cursor pagination's
-- (tenant_id, created_at DESC, id DESC), an agent's period of (tenant_id, agent_id,
-- created_at DESC), and the cost and MOS read their tables by (tenant_id, billed_at) and
-- (tenant_id, sampled_at) WHERE is_final. A covering index (every column the stats read,
-- for index-only scans) measured no faster over a million sessions in bench/stats.py
-- while costing every session write one more index entry, so it is not built.
