-- 0023_stats_rollup: the manager's stats over long periods read a daily rollup, not every
-- session.
--
-- GET /api/v1/click-to-call/stats over a year of a million sessions scanned every one of
-- them (seconds: bench/stats.py). call_stats_daily holds, per tenant and day (the day the
-- session was created, in the tenant's time zone), the sums the report is made of, one
-- row set per breakdown (dim): status, agent, provider, direction (ended sessions: the
-- live ones are few and read from the sessions themselves), cost per currency (billing
-- lines) and MOS (legs' end-of-call quality rows).
--
-- Maintained by triggers, in the transaction that changes the facts, so the rollup is never
-- behind nor ahead of the tables it sums (a rerate's rewritten line, a session ending days
-- after it was created, a row deleted by retention: each one is taken out as it was and
-- added as it is). The triggers only append rows (a change is a -1 row and a +1 row), so
-- concurrent calls never wait on each other for a shared counter; ctc_stats_compact()
-- (run by the engine every stats.compact_interval seconds, idempotent: nothing changes
-- when it runs again) folds each day's rows into one per breakdown and key. If no engine
-- runs it for a while, the rollup stays exact and only grows: the next run catches up.
--
-- A change of tenant.timezone moves every day boundary: the tenant's rollup is rebuilt
-- from its sessions, lines and quality rows in that UPDATE (one statement per table; ~18 s
-- for a million sessions in bench/stats.py, during which calls go on). A call that ends
-- while that UPDATE runs is counted on its day in the old zone (its trigger still reads
-- it): `SELECT call_stats_rebuild('<tenant id>')` afterwards counts it in the new one.
--
-- Applied to a live PBX's database: creating the triggers takes a short SHARE ROW EXCLUSIVE
-- lock on each table (writes wait, reads do not); the backfill runs after them in the same
-- transaction, so no row is counted twice or missed, and writes to click_to_call_session,
-- call_usage_billing and call_quality_metric wait for it (~seconds per million sessions).

SET LOCAL lock_timeout = '5s';

CREATE TABLE call_stats_daily (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- no foreign key: a tenant's deletion cascades to its sessions, whose triggers would
    -- then add rows for a tenant that is going; its rows are deleted with it instead
    -- (call_stats_tenant_gone)
    tenant_id    uuid NOT NULL,
    day          date NOT NULL,
    dim          text NOT NULL
                     CHECK (dim IN ('status', 'agent', 'provider', 'direction', 'cost', 'mos')),
    -- status, agent (agent_id, else agent_number), provider id, direction, currency;
    -- NULL: none (an inbound call's agent, a call without a provider, mos)
    key          text,
    sessions     bigint NOT NULL DEFAULT 0,
    connected    bigint NOT NULL DEFAULT 0,
    ring_ms_sum  bigint NOT NULL DEFAULT 0,
    ring_ms_n    bigint NOT NULL DEFAULT 0,
    talk_ms_sum  bigint NOT NULL DEFAULT 0,
    talk_ms_n    bigint NOT NULL DEFAULT 0,
    legs         bigint NOT NULL DEFAULT 0,
    seconds      bigint NOT NULL DEFAULT 0,
    amount       bigint NOT NULL DEFAULT 0,
    mos_sum      numeric NOT NULL DEFAULT 0,
    mos_n        bigint NOT NULL DEFAULT 0,
    -- false: appended by a trigger since the last compaction
    compacted    boolean NOT NULL DEFAULT false
);
CREATE INDEX call_stats_daily_day_idx ON call_stats_daily (tenant_id, day);
CREATE INDEX call_stats_daily_fresh_idx ON call_stats_daily (tenant_id, day) WHERE NOT compacted;

CREATE FUNCTION call_stats_zone(of_tenant uuid) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT timezone FROM tenant WHERE id = of_tenant
$$;

-- A session's rows: its four breakdowns, signed (+1 added, -1 taken out).
CREATE FUNCTION call_stats_add_session(s click_to_call_session, sign int) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    zone text := call_stats_zone(s.tenant_id);
BEGIN
    IF zone IS NULL THEN
        RETURN;  -- the tenant is being deleted
    END IF;
    INSERT INTO call_stats_daily (tenant_id, day, dim, key, sessions, connected, ring_ms_sum,
                                  ring_ms_n, talk_ms_sum, talk_ms_n)
    SELECT s.tenant_id, (s.created_at AT TIME ZONE zone)::date, d.dim, d.key, sign,
           sign * (s.connected_at IS NOT NULL)::int, sign * coalesce(s.ring_ms, 0),
           sign * (s.ring_ms IS NOT NULL)::int, sign * coalesce(s.talk_ms, 0),
           sign * (s.talk_ms IS NOT NULL)::int
    FROM (VALUES ('status', s.status), ('agent', coalesce(s.agent_id, s.agent_number)),
                 ('provider', s.provider_id::text),
                 ('direction', s.direction)) AS d(dim, key);
END;
$$;

CREATE FUNCTION call_stats_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.status IN ('completed', 'busy', 'no_answer', 'failed',
                                            'canceled', 'rejected') THEN
        PERFORM call_stats_add_session(OLD, -1);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.status IN ('completed', 'busy', 'no_answer', 'failed',
                                            'canceled', 'rejected') THEN
        PERFORM call_stats_add_session(NEW, 1);
    END IF;
    RETURN NULL;
END;
$$;

-- Only what the rollup reads: a live call's many updates do not fire it.
CREATE TRIGGER call_stats_session_insert AFTER INSERT ON click_to_call_session
    FOR EACH ROW WHEN (NEW.status IN ('completed', 'busy', 'no_answer', 'failed', 'canceled',
                                      'rejected'))
    EXECUTE FUNCTION call_stats_session();
CREATE TRIGGER call_stats_session_update AFTER UPDATE ON click_to_call_session
    FOR EACH ROW WHEN (
        (OLD.status, OLD.created_at, OLD.connected_at, OLD.ring_ms, OLD.talk_ms, OLD.agent_id,
         OLD.agent_number, OLD.provider_id, OLD.direction, OLD.tenant_id)
        IS DISTINCT FROM
        (NEW.status, NEW.created_at, NEW.connected_at, NEW.ring_ms, NEW.talk_ms, NEW.agent_id,
         NEW.agent_number, NEW.provider_id, NEW.direction, NEW.tenant_id))
    EXECUTE FUNCTION call_stats_session();
CREATE TRIGGER call_stats_session_delete AFTER DELETE ON click_to_call_session
    FOR EACH ROW WHEN (OLD.status IN ('completed', 'busy', 'no_answer', 'failed', 'canceled',
                                      'rejected'))
    EXECUTE FUNCTION call_stats_session();

-- A billing line or a final quality row counts on the day its session was created.
CREATE FUNCTION call_stats_session_day(of_tenant uuid, of_session uuid) RETURNS date
LANGUAGE sql STABLE AS $$
    SELECT (s.created_at AT TIME ZONE t.timezone)::date
    FROM click_to_call_session s JOIN tenant t ON t.id = s.tenant_id
    WHERE s.tenant_id = of_tenant AND s.id = of_session
$$;

CREATE FUNCTION call_stats_line() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    day date;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        day := call_stats_session_day(OLD.tenant_id, OLD.session_id);
        IF day IS NOT NULL THEN
            INSERT INTO call_stats_daily (tenant_id, day, dim, key, legs, seconds, amount)
            VALUES (OLD.tenant_id, day, 'cost', OLD.currency, -1, -OLD.billable_seconds,
                    -OLD.amount_minor);
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        day := call_stats_session_day(NEW.tenant_id, NEW.session_id);
        IF day IS NOT NULL THEN
            INSERT INTO call_stats_daily (tenant_id, day, dim, key, legs, seconds, amount)
            VALUES (NEW.tenant_id, day, 'cost', NEW.currency, 1, NEW.billable_seconds,
                    NEW.amount_minor);
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER call_stats_line AFTER INSERT OR DELETE OR UPDATE OF
    tenant_id, session_id, currency, billable_seconds, amount_minor ON call_usage_billing
    FOR EACH ROW EXECUTE FUNCTION call_stats_line();

CREATE FUNCTION call_stats_quality() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    day date;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.is_final AND OLD.mos IS NOT NULL THEN
        day := call_stats_session_day(OLD.tenant_id, OLD.session_id);
        IF day IS NOT NULL THEN
            INSERT INTO call_stats_daily (tenant_id, day, dim, key, mos_sum, mos_n)
            VALUES (OLD.tenant_id, day, 'mos', NULL, -OLD.mos, -1);
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.is_final AND NEW.mos IS NOT NULL THEN
        day := call_stats_session_day(NEW.tenant_id, NEW.session_id);
        IF day IS NOT NULL THEN
            INSERT INTO call_stats_daily (tenant_id, day, dim, key, mos_sum, mos_n)
            VALUES (NEW.tenant_id, day, 'mos', NULL, NEW.mos, 1);
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER call_stats_quality AFTER INSERT OR DELETE OR UPDATE OF
    tenant_id, session_id, is_final, mos ON call_quality_metric
    FOR EACH ROW EXECUTE FUNCTION call_stats_quality();

-- Every row of one tenant (or all tenants: NULL) from the facts, compacted.
CREATE FUNCTION call_stats_rebuild(only_tenant uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM call_stats_daily WHERE only_tenant IS NULL OR tenant_id = only_tenant;
    INSERT INTO call_stats_daily (tenant_id, day, dim, key, sessions, connected, ring_ms_sum,
                                  ring_ms_n, talk_ms_sum, talk_ms_n, compacted)
    SELECT s.tenant_id, s.day, d.dim, d.key, count(*), count(s.connected_at),
           coalesce(sum(s.ring_ms), 0), count(s.ring_ms), coalesce(sum(s.talk_ms), 0),
           count(s.talk_ms), true
    FROM (SELECT c.*, (c.created_at AT TIME ZONE t.timezone)::date AS day
          FROM click_to_call_session c JOIN tenant t ON t.id = c.tenant_id
          WHERE (only_tenant IS NULL OR c.tenant_id = only_tenant)
            AND c.status IN ('completed', 'busy', 'no_answer', 'failed', 'canceled',
                             'rejected')) s
    CROSS JOIN LATERAL (VALUES ('status', s.status),
                               ('agent', coalesce(s.agent_id, s.agent_number)),
                               ('provider', s.provider_id::text),
                               ('direction', s.direction)) AS d(dim, key)
    GROUP BY s.tenant_id, s.day, d.dim, d.key;
    INSERT INTO call_stats_daily (tenant_id, day, dim, key, legs, seconds, amount, compacted)
    SELECT b.tenant_id, (s.created_at AT TIME ZONE t.timezone)::date, 'cost', b.currency,
           count(*), sum(b.billable_seconds), sum(b.amount_minor), true
    FROM call_usage_billing b
    JOIN click_to_call_session s ON s.tenant_id = b.tenant_id AND s.id = b.session_id
    JOIN tenant t ON t.id = b.tenant_id
    WHERE only_tenant IS NULL OR b.tenant_id = only_tenant
    GROUP BY 1, 2, 4;
    INSERT INTO call_stats_daily (tenant_id, day, dim, key, mos_sum, mos_n, compacted)
    SELECT q.tenant_id, (s.created_at AT TIME ZONE t.timezone)::date, 'mos', NULL,
           sum(q.mos), count(*), true
    FROM call_quality_metric q
    JOIN click_to_call_session s ON s.tenant_id = q.tenant_id AND s.id = q.session_id
    JOIN tenant t ON t.id = q.tenant_id
    WHERE q.is_final AND q.mos IS NOT NULL
      AND (only_tenant IS NULL OR q.tenant_id = only_tenant)
    GROUP BY 1, 2;
END;
$$;

CREATE FUNCTION call_stats_tenant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM call_stats_daily WHERE tenant_id = OLD.id;
    ELSE
        PERFORM call_stats_rebuild(NEW.id);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER call_stats_tenant_zone AFTER UPDATE OF timezone ON tenant
    FOR EACH ROW WHEN (OLD.timezone IS DISTINCT FROM NEW.timezone)
    EXECUTE FUNCTION call_stats_tenant();
CREATE TRIGGER call_stats_tenant_gone AFTER DELETE ON tenant
    FOR EACH ROW EXECUTE FUNCTION call_stats_tenant();

-- Fold the rows appended since the last run into one per (tenant, day, dim, key); a key
-- whose sums came to nothing (a session counted and taken out again) leaves no row. How
-- many (tenant, day) pairs it folded. Safe to run at any time, and again.
CREATE FUNCTION ctc_stats_compact() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    folded bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('ctc_stats_compact')) THEN
        RETURN 0;  -- another engine is folding them now
    END IF;
    WITH fresh AS (
        SELECT DISTINCT tenant_id, day FROM call_stats_daily WHERE NOT compacted
    ), gone AS (
        DELETE FROM call_stats_daily d USING fresh f
        WHERE d.tenant_id = f.tenant_id AND d.day = f.day
        RETURNING d.*
    ), summed AS (
        INSERT INTO call_stats_daily (tenant_id, day, dim, key, sessions, connected,
                                      ring_ms_sum, ring_ms_n, talk_ms_sum, talk_ms_n, legs,
                                      seconds, amount, mos_sum, mos_n, compacted)
        SELECT tenant_id, day, dim, key, sum(sessions), sum(connected), sum(ring_ms_sum),
               sum(ring_ms_n), sum(talk_ms_sum), sum(talk_ms_n), sum(legs), sum(seconds),
               sum(amount), sum(mos_sum), sum(mos_n), true
        FROM gone GROUP BY tenant_id, day, dim, key
        HAVING sum(sessions) <> 0 OR sum(legs) <> 0 OR sum(mos_n) <> 0
        RETURNING 1
    )
    SELECT count(*) INTO folded FROM fresh;
    RETURN folded;
END;
$$;

SELECT call_stats_rebuild(NULL);
