-- 0001_init: tenants, API tokens, providers, call sessions and their event log,
-- the callback outbox, agent activity and inbound webhook log.
--
-- Conventions (every migration follows them):
--   * every table has tenant_id uuid NOT NULL REFERENCES tenant(id)
--   * timestamps are timestamptz, money is bigint minor units + char(3) currency
--   * phone numbers are E.164 text, checked with the e164 domain
--   * enumerations are CHECK constraints on text columns
--   * the migration runner wraps each file in one transaction; no BEGIN/COMMIT here

CREATE DOMAIN e164 AS text CHECK (VALUE ~ '^\+[1-9][0-9]{6,14}$');

CREATE TABLE tenant (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug            text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name            text NOT NULL,
    -- where status callbacks go (a request may override it) and the HMAC key that signs them
    callback_url    text,
    callback_secret text NOT NULL
                        DEFAULT replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''),
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The tenant that local (Unix socket) requests act for when they name none.
INSERT INTO tenant (slug, name) VALUES ('default', 'Default tenant');

CREATE TABLE api_token (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    name         text NOT NULL DEFAULT '',
    -- sha256 hex of the token; the token itself is shown once and never stored
    token_hash   text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    token_prefix text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_token_tenant_idx ON api_token (tenant_id);

CREATE TABLE voip_provider (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    name                 text NOT NULL,
    provider_type        text NOT NULL CHECK (provider_type IN
                             ('asterisk', 'sip_trunk', 'twilio', 'exotel', 'vonage', 'mcube')),
    is_active            boolean NOT NULL DEFAULT true,
    is_default           boolean NOT NULL DEFAULT false,
    -- lower runs first when several providers can carry a call
    priority             integer NOT NULL DEFAULT 100 CHECK (priority >= 0),
    max_concurrent_calls integer CHECK (max_concurrent_calls IS NULL OR max_concurrent_calls > 0),
    calls_per_second     numeric(8, 2) CHECK (calls_per_second IS NULL OR calls_per_second > 0),
    -- non-secret settings (endpoint templates, account ids, regions)
    config               jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(config) = 'object'),
    -- secrets (API keys, auth tokens); never returned by the API
    credentials          jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(credentials) = 'object'),
    webhook_secret       text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX voip_provider_one_default_idx
    ON voip_provider (tenant_id) WHERE is_default;
CREATE INDEX voip_provider_tenant_type_idx ON voip_provider (tenant_id, provider_type);

CREATE TABLE click_to_call_session (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id             uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    provider_id           uuid,
    direction             text NOT NULL DEFAULT 'click_to_call'
                              CHECK (direction IN ('click_to_call', 'inbound', 'outbound')),
    status                text NOT NULL DEFAULT 'queued' CHECK (status IN
                              ('queued', 'dialing_agent', 'agent_answered', 'dialing_customer',
                               'connected', 'completed', 'busy', 'no_answer', 'failed',
                               'canceled', 'rejected')),
    agent_number          text NOT NULL,
    customer_number       e164 NOT NULL,
    caller_id             e164,
    agent_id              text,           -- the ERP's user id of the agent
    external_ref          text,           -- the ERP's own reference (lead, ticket, order)
    callback_url          text,           -- per-request override of tenant.callback_url
    metadata              jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    idempotency_key       text,
    request_hash          text,
    -- telephony handles
    agent_channel_id      text,
    customer_channel_id   text,
    bridge_id             text,
    provider_call_id      text,
    -- outcome
    hangup_cause          integer,
    hangup_cause_text     text,
    end_reason            text,
    recording_path        text,
    recording_duration_ms integer CHECK (recording_duration_ms IS NULL OR recording_duration_ms >= 0),
    ring_ms               integer CHECK (ring_ms IS NULL OR ring_ms >= 0),
    talk_ms               integer CHECK (talk_ms IS NULL OR talk_ms >= 0),
    -- timeline
    created_at            timestamptz NOT NULL DEFAULT now(),
    dialing_agent_at      timestamptz,
    agent_answered_at     timestamptz,
    dialing_customer_at   timestamptz,
    connected_at          timestamptz,
    ended_at              timestamptz,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    -- bumped on every change: the next call_event.seq and an optimistic-lock token
    version               integer NOT NULL DEFAULT 0,
    FOREIGN KEY (tenant_id, provider_id) REFERENCES voip_provider (tenant_id, id),
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX click_to_call_session_idem_idx
    ON click_to_call_session (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- cursor pagination: newest first, ties broken by id
CREATE INDEX click_to_call_session_list_idx
    ON click_to_call_session (tenant_id, created_at DESC, id DESC);
CREATE INDEX click_to_call_session_status_idx
    ON click_to_call_session (tenant_id, status, created_at DESC);
CREATE INDEX click_to_call_session_agent_idx
    ON click_to_call_session (tenant_id, agent_id, created_at DESC) WHERE agent_id IS NOT NULL;
-- resync after a reconnect scans the live ones only
CREATE INDEX click_to_call_session_live_idx ON click_to_call_session (status)
    WHERE status IN ('queued', 'dialing_agent', 'agent_answered', 'dialing_customer', 'connected');
CREATE INDEX click_to_call_session_provider_call_idx
    ON click_to_call_session (provider_call_id) WHERE provider_call_id IS NOT NULL;

-- Append-only: every transition and telephony fact of a session, in order.
CREATE TABLE call_event (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    session_id  uuid NOT NULL,
    seq         integer NOT NULL CHECK (seq > 0),
    event_type  text NOT NULL CHECK (event_type ~ '^[a-z][a-z0-9_.]*$'),
    status_from text,
    status_to   text,
    payload     jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(payload) = 'object'),
    occurred_at timestamptz NOT NULL DEFAULT now(),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, session_id) REFERENCES click_to_call_session (tenant_id, id)
        ON DELETE CASCADE,
    UNIQUE (session_id, seq)
);
CREATE INDEX call_event_tenant_id_idx ON call_event (tenant_id, id);

CREATE FUNCTION call_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- deleting a session or tenant cascades here (from inside the FK trigger, depth > 1);
    -- a direct UPDATE or DELETE of history is refused
    IF TG_OP = 'DELETE' AND pg_trigger_depth() > 1 THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'call_event is append-only (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER call_event_no_change BEFORE UPDATE OR DELETE ON call_event
    FOR EACH ROW EXECUTE FUNCTION call_event_append_only();

-- Outgoing status callbacks, written in the same transaction as the event they carry,
-- delivered (in order per session) by the notifier with retries.
CREATE TABLE callback_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    session_id      uuid NOT NULL,
    event_id        bigint NOT NULL REFERENCES call_event(id) ON DELETE CASCADE,
    url             text NOT NULL,
    payload         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    last_status     integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    FOREIGN KEY (tenant_id, session_id) REFERENCES click_to_call_session (tenant_id, id)
        ON DELETE CASCADE
);
CREATE INDEX callback_outbox_due_idx ON callback_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX callback_outbox_session_idx ON callback_outbox (session_id, id);

CREATE TABLE agent_activity_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    agent_id    text NOT NULL,
    activity    text NOT NULL CHECK (activity IN
                    ('login', 'logout', 'available', 'busy', 'break', 'wrap_up', 'on_call',
                     'offline')),
    session_id  uuid,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(details) = 'object'),
    occurred_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, session_id) REFERENCES click_to_call_session (tenant_id, id)
);
CREATE INDEX agent_activity_log_agent_idx ON agent_activity_log (tenant_id, agent_id, occurred_at DESC);

-- Every webhook a carrier sent us, as received, and what we made of it.
CREATE TABLE click_to_call_webhook_log (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    provider_type     text NOT NULL CHECK (provider_type IN
                          ('asterisk', 'sip_trunk', 'twilio', 'exotel', 'vonage', 'mcube')),
    provider_id       uuid,
    session_id        uuid,
    provider_call_id  text,
    event_type        text,
    payload           jsonb NOT NULL,
    headers           jsonb NOT NULL DEFAULT '{}'::jsonb,
    signature_valid   boolean,
    processing_status text NOT NULL DEFAULT 'received'
                          CHECK (processing_status IN ('received', 'processed', 'ignored', 'rejected', 'error')),
    error             text,
    received_at       timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, provider_id) REFERENCES voip_provider (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES click_to_call_session (tenant_id, id)
);
CREATE INDEX click_to_call_webhook_log_tenant_idx ON click_to_call_webhook_log (tenant_id, received_at DESC);
CREATE INDEX click_to_call_webhook_log_session_idx ON click_to_call_webhook_log (session_id)
    WHERE session_id IS NOT NULL;
