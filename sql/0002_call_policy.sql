-- 0002_call_policy: IVR menus and DTMF, routing, transfers, recording, call quality,
-- compliance (number lists, rules), caller-ID profiles, rating and billing.
--
-- Same conventions as 0001. In addition:
--   * a table other tables point at has UNIQUE (tenant_id, id), and every reference is a
--     composite (tenant_id, x_id) foreign key, so no row can point into another tenant;
--   * configuration rows (menus, rules, profiles, rates) have uuid ids the API hands out;
--     high-volume facts (DTMF, quality samples, billing lines) have bigint identity ids;
--   * configuration that history points at (menus, rules, rates) is deactivated or
--     end-dated, not deleted: those references are NO ACTION. Deleting a tenant still
--     removes everything, because every table cascades from tenant.

-- The IVR action vocabulary, shared by menu options and a menu's fallback.
CREATE DOMAIN ivr_action AS text CHECK (VALUE IN
    ('submenu', 'back', 'repeat', 'transfer', 'record_message', 'http_lookup',
     'set_variable', 'hangup'));

-- What a transfer (from the API, an IVR option or a menu fallback) goes to.
--   agent:        an agent number or endpoint, dialled like click_to_call_session.agent_number
--   endpoint:     an Asterisk dial string, e.g. PJSIP/1001
--   number:       an E.164 number, dialled through a provider
--   routing_rule: hand the call to call_routing_rule (routing_rule_id)
CREATE DOMAIN transfer_target_type AS text CHECK (VALUE IN
    ('agent', 'endpoint', 'number', 'routing_rule'));

-- The legs of a session: agent/customer for click-to-call, caller/target for inbound.
CREATE DOMAIN call_leg AS text CHECK (VALUE IN ('agent', 'customer', 'caller', 'target'));

CREATE DOMAIN currency_code AS char(3) CHECK (VALUE ~ '^[A-Z]{3}$');

-- ---------------------------------------------------------------------------------------
-- IVR
-- ---------------------------------------------------------------------------------------

-- Prompts (greeting_prompt, invalid_prompt, timeout_prompt, ivr_menu_option.prompt): a
-- value starting with an ARI media scheme (sound:, recording:, digits:, number:,
-- characters:, tone:) is played as is; anything else is text for the TTS engine.
CREATE TABLE ivr_menu (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id               uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    name                    text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
    description             text NOT NULL DEFAULT '',
    greeting_prompt         text CHECK (btrim(greeting_prompt) <> ''),
    invalid_prompt          text CHECK (btrim(invalid_prompt) <> ''),
    timeout_prompt          text CHECK (btrim(timeout_prompt) <> ''),
    -- wait for the first key after the prompt ends
    timeout_ms              integer NOT NULL DEFAULT 5000
                                CHECK (timeout_ms BETWEEN 100 AND 600000),
    -- wait between keys once input has started (multi-digit modes)
    inter_digit_timeout_ms  integer NOT NULL DEFAULT 3000
                                CHECK (inter_digit_timeout_ms BETWEEN 100 AND 60000),
    -- replays after an invalid key or a timeout before the fallback runs
    max_retries             integer NOT NULL DEFAULT 3 CHECK (max_retries BETWEEN 0 AND 20),
    input_mode              text NOT NULL DEFAULT 'single_digit'
                                CHECK (input_mode IN ('single_digit', 'fixed_length',
                                                      'until_terminator')),
    -- exact length for fixed_length, upper bound for until_terminator
    input_length            smallint CHECK (input_length BETWEEN 1 AND 64),
    terminator              text CHECK (terminator IN ('#', '*')),
    -- channel/session variable the collected input is stored in
    variable_name           text CHECK (variable_name ~ '^[A-Za-z_][A-Za-z0-9_]{0,63}$'),
    -- what runs when max_retries is exhausted; targets as in ivr_menu_option
    fallback_action                ivr_action NOT NULL DEFAULT 'hangup',
    fallback_target_menu_id        uuid,
    fallback_transfer_target_type  transfer_target_type,
    fallback_transfer_target       text,
    fallback_routing_rule_id       uuid,   -- FK added below, once call_routing_rule exists
    fallback_action_params         jsonb NOT NULL DEFAULT '{}'::jsonb
                                       CHECK (jsonb_typeof(fallback_action_params) = 'object'),
    is_active               boolean NOT NULL DEFAULT true,
    -- bumped on every edit: optimistic-lock token, and recorded with each DTMF row so
    -- statistics know which revision of the menu the caller heard
    version                 integer NOT NULL DEFAULT 1 CHECK (version > 0),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, fallback_target_menu_id) REFERENCES ivr_menu (tenant_id, id),
    CHECK (input_mode <> 'fixed_length' OR input_length IS NOT NULL),
    CHECK (input_mode <> 'until_terminator' OR terminator IS NOT NULL),
    CHECK (input_mode = 'single_digit' OR variable_name IS NOT NULL),
    CHECK ((fallback_action = 'submenu') = (fallback_target_menu_id IS NOT NULL)),
    CHECK ((fallback_action = 'transfer') = (fallback_transfer_target_type IS NOT NULL)),
    CHECK ((fallback_transfer_target_type IS NOT DISTINCT FROM 'routing_rule')
           = (fallback_routing_rule_id IS NOT NULL)),
    CHECK (fallback_transfer_target_type IS NULL OR fallback_transfer_target_type = 'routing_rule'
           OR coalesce(btrim(fallback_transfer_target), '') <> ''),
    CHECK (fallback_transfer_target_type IS DISTINCT FROM 'number'
           OR fallback_transfer_target ~ '^\+[1-9][0-9]{6,14}$'),
    CHECK (fallback_action <> 'http_lookup' OR fallback_action_params ? 'url'),
    CHECK (fallback_action <> 'set_variable' OR fallback_action_params ? 'name')
);
CREATE INDEX ivr_menu_active_idx ON ivr_menu (tenant_id, name) WHERE is_active;

-- ---------------------------------------------------------------------------------------
-- Routing
-- ---------------------------------------------------------------------------------------

-- Rules are evaluated in priority order (lower first); the first active rule whose
-- conditions (match_type/match_value and, when set, schedule) hold decides the strategy.
CREATE TABLE call_routing_rule (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    name             text NOT NULL,
    description      text NOT NULL DEFAULT '',
    priority         integer NOT NULL DEFAULT 100 CHECK (priority >= 0),
    is_active        boolean NOT NULL DEFAULT true,
    -- which sessions the rule applies to (click_to_call_session.direction, or any)
    direction        text NOT NULL DEFAULT 'inbound'
                         CHECK (direction IN ('inbound', 'outbound', 'click_to_call', 'any')),
    -- caller_prefix: E.164 prefix of the caller ('+9180'); dialed_number: the DID or
    -- extension dialled; skill: a skill the IVR set; time_of_day: schedule only;
    -- tenant_default: the catch-all
    match_type       text NOT NULL CHECK (match_type IN
                         ('caller_prefix', 'dialed_number', 'time_of_day', 'tenant_default',
                          'skill')),
    match_value      text,
    -- {"timezone": "Asia/Kolkata", "windows": [{"days": [1,2,3,4,5], "start": "09:00",
    --  "end": "18:00"}]}, days ISO 1 = Monday; when set it narrows any match_type
    schedule         jsonb CHECK (jsonb_typeof(schedule) = 'object'),
    strategy         text NOT NULL CHECK (strategy IN
                         ('ring_agent', 'ring_group_round_robin', 'ring_group_simultaneous',
                          'least_recent', 'ivr_menu', 'provider')),
    -- ring_agent: the agent number or endpoint to ring
    target           text,
    -- ring_group_* and least_recent: the agent numbers/endpoints of the group, in order
    members          jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(members) = 'array'),
    ivr_menu_id      uuid,
    provider_id      uuid,
    ring_timeout_s   integer NOT NULL DEFAULT 30 CHECK (ring_timeout_s BETWEEN 1 AND 600),
    -- tried when nobody answers within ring_timeout_s or the target is unavailable
    fallback_rule_id uuid,
    params           jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(params) = 'object'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, ivr_menu_id) REFERENCES ivr_menu (tenant_id, id),
    FOREIGN KEY (tenant_id, provider_id) REFERENCES voip_provider (tenant_id, id),
    FOREIGN KEY (tenant_id, fallback_rule_id) REFERENCES call_routing_rule (tenant_id, id)
        ON DELETE SET NULL (fallback_rule_id),
    CHECK (fallback_rule_id <> id),
    CHECK (match_type NOT IN ('caller_prefix', 'dialed_number', 'skill')
           OR coalesce(btrim(match_value), '') <> ''),
    CHECK (match_type <> 'caller_prefix' OR match_value ~ '^\+[0-9]{1,15}$'),
    CHECK (match_type NOT IN ('tenant_default', 'time_of_day') OR match_value IS NULL),
    CHECK (match_type <> 'time_of_day' OR schedule IS NOT NULL),
    CHECK (strategy <> 'ring_agent' OR coalesce(btrim(target), '') <> ''),
    CHECK (strategy NOT IN ('ring_group_round_robin', 'ring_group_simultaneous', 'least_recent')
           OR jsonb_array_length(members) > 0),
    CHECK ((strategy = 'ivr_menu') = (ivr_menu_id IS NOT NULL)),
    CHECK (strategy <> 'provider' OR provider_id IS NOT NULL)
);
CREATE INDEX call_routing_rule_eval_idx
    ON call_routing_rule (tenant_id, priority, id) WHERE is_active;
-- an inbound call arrives on a DID before we know the tenant
CREATE INDEX call_routing_rule_did_idx
    ON call_routing_rule (match_value) WHERE match_type = 'dialed_number' AND is_active;
CREATE UNIQUE INDEX call_routing_rule_one_default_idx
    ON call_routing_rule (tenant_id, direction) WHERE match_type = 'tenant_default' AND is_active;

ALTER TABLE ivr_menu ADD FOREIGN KEY (tenant_id, fallback_routing_rule_id)
    REFERENCES call_routing_rule (tenant_id, id);

CREATE TABLE ivr_menu_option (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    menu_id              uuid NOT NULL,
    -- a key, or a special key: 'timeout' / 'invalid' override the menu's retry handling,
    -- 'collected' is what runs after a fixed_length/until_terminator menu got its input
    digit                text NOT NULL
                             CHECK (digit ~ '^[0-9*#]$' OR digit IN ('timeout', 'invalid',
                                                                     'collected')),
    action               ivr_action NOT NULL,
    target_menu_id       uuid,
    transfer_target_type transfer_target_type,
    transfer_target      text,
    routing_rule_id      uuid,
    -- record_message: {"max_duration_s", "beep", "silence_s"};
    -- http_lookup: {"url", "method", "timeout_ms", "result_variable"};
    -- set_variable: {"name", "value"}
    action_params        jsonb NOT NULL DEFAULT '{}'::jsonb
                             CHECK (jsonb_typeof(action_params) = 'object'),
    -- played when the option is chosen, before its action
    prompt               text CHECK (btrim(prompt) <> ''),
    -- order in listings and in generated "press 1 for ..." prompts
    position             integer NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (menu_id, digit),
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, menu_id, id),
    FOREIGN KEY (tenant_id, menu_id) REFERENCES ivr_menu (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, target_menu_id) REFERENCES ivr_menu (tenant_id, id),
    FOREIGN KEY (tenant_id, routing_rule_id) REFERENCES call_routing_rule (tenant_id, id),
    CHECK ((action = 'submenu') = (target_menu_id IS NOT NULL)),
    CHECK ((action = 'transfer') = (transfer_target_type IS NOT NULL)),
    CHECK ((transfer_target_type IS NOT DISTINCT FROM 'routing_rule')
           = (routing_rule_id IS NOT NULL)),
    CHECK (transfer_target_type IS NULL OR transfer_target_type = 'routing_rule'
           OR coalesce(btrim(transfer_target), '') <> ''),
    CHECK (transfer_target_type IS DISTINCT FROM 'number'
           OR transfer_target ~ '^\+[1-9][0-9]{6,14}$'),
    CHECK (action <> 'http_lookup' OR action_params ? 'url'),
    CHECK (action <> 'set_variable' OR action_params ? 'name')
);
CREATE INDEX ivr_menu_option_menu_idx ON ivr_menu_option (menu_id, position, digit);
CREATE INDEX ivr_menu_option_target_idx ON ivr_menu_option (target_menu_id)
    WHERE target_menu_id IS NOT NULL;

-- One row per decision the caller made in a menu (a key, a collected input, a timeout).
CREATE TABLE call_dtmf_interaction (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    session_id      uuid NOT NULL,
    menu_id         uuid NOT NULL,
    menu_version    integer NOT NULL CHECK (menu_version > 0),
    option_id       uuid,
    -- the keys as pressed: one key for single_digit, the raw sequence (terminator
    -- included) for the collect modes; NULL when nothing was pressed
    digit           text CHECK (digit ~ '^[0-9A-D*#]{1,65}$'),
    -- the collected value, terminator stripped, as stored in the menu's variable
    input_value     text CHECK (input_value ~ '^[0-9A-D*#]{0,64}$'),
    outcome         text NOT NULL CHECK (outcome IN ('option', 'invalid', 'timeout', 'collected')),
    -- 1 for the first try, then per retry
    attempt         smallint NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    -- from the end of the prompt (or the start, if the caller barged in) to the decision
    ms_since_prompt integer CHECK (ms_since_prompt >= 0),
    channel_id      text,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, session_id) REFERENCES click_to_call_session (tenant_id, id)
        ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, menu_id) REFERENCES ivr_menu (tenant_id, id),
    -- the option must belong to the menu; options are edited freely, history keeps the key
    FOREIGN KEY (tenant_id, menu_id, option_id) REFERENCES ivr_menu_option (tenant_id, menu_id, id)
        ON DELETE SET NULL (option_id),
    CHECK (outcome <> 'collected' OR input_value IS NOT NULL)
);
CREATE INDEX call_dtmf_interaction_session_idx ON call_dtmf_interaction (session_id, id);
CREATE INDEX call_dtmf_interaction_menu_idx
    ON call_dtmf_interaction (tenant_id, menu_id, occurred_at DESC);

-- ---------------------------------------------------------------------------------------
-- Transfers, recording, quality
-- ---------------------------------------------------------------------------------------

CREATE TABLE call_transfer (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    session_id        uuid NOT NULL,
    transfer_type     text NOT NULL CHECK (transfer_type IN ('blind', 'attended')),
    initiated_by      text NOT NULL CHECK (initiated_by IN ('api', 'ivr', 'agent')),
    -- the IVR option that asked for it, when initiated_by = 'ivr'
    option_id         uuid,
    -- the leg that stays and is moved to the target (the other leg is released)
    from_leg          call_leg NOT NULL,
    target_type       transfer_target_type NOT NULL,
    target            text,
    routing_rule_id   uuid,
    target_channel_id text,
    -- attended: the bridge where the transferring party talks to the target first
    consult_bridge_id text,
    state             text NOT NULL DEFAULT 'initiated' CHECK (state IN
                          ('initiated', 'consulting', 'completed', 'canceled', 'failed',
                           'busy', 'no_answer')),
    failure_cause     text,
    hangup_cause      integer,
    requested_at      timestamptz NOT NULL DEFAULT now(),
    answered_at       timestamptz,
    completed_at      timestamptz,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES click_to_call_session (tenant_id, id)
        ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, option_id) REFERENCES ivr_menu_option (tenant_id, id)
        ON DELETE SET NULL (option_id),
    FOREIGN KEY (tenant_id, routing_rule_id) REFERENCES call_routing_rule (tenant_id, id),
    CHECK ((target_type = 'routing_rule') = (routing_rule_id IS NOT NULL)),
    CHECK (target_type = 'routing_rule' OR coalesce(btrim(target), '') <> ''),
    CHECK (target_type <> 'number' OR target ~ '^\+[1-9][0-9]{6,14}$'),
    CHECK (state <> 'consulting' OR transfer_type = 'attended'),
    CHECK (answered_at IS NULL OR answered_at >= requested_at),
    CHECK (completed_at IS NULL OR completed_at >= requested_at)
);
CREATE INDEX call_transfer_session_idx ON call_transfer (session_id, requested_at);
CREATE INDEX call_transfer_tenant_idx ON call_transfer (tenant_id, requested_at DESC);
-- a session has at most one transfer in flight
CREATE UNIQUE INDEX call_transfer_one_live_idx
    ON call_transfer (session_id) WHERE state IN ('initiated', 'consulting');

-- The recording policy for a session is the most specific matching row: provider and
-- direction, then provider, then direction, then the tenant's default.
CREATE TABLE call_recording_config (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    provider_id    uuid,
    direction      text CHECK (direction IN ('click_to_call', 'inbound', 'outbound')),
    is_enabled     boolean NOT NULL DEFAULT true,
    -- for inbound calls 'customer' is the caller and 'agent' whoever answered
    record         text NOT NULL DEFAULT 'both' CHECK (record IN ('both', 'agent', 'customer')),
    format         text NOT NULL DEFAULT 'wav' CHECK (format IN ('wav', 'gsm')),
    -- name template relative to Asterisk's recording spool, e.g. '{tenant}/{date}/{session_id}'
    storage_path   text NOT NULL DEFAULT '{tenant}/{date}/{session_id}'
                       CHECK (storage_path !~ '(^/|\.\.)'),
    -- NULL keeps recordings forever
    retention_days integer CHECK (retention_days > 0),
    beep           boolean NOT NULL DEFAULT false,
    max_duration_s integer CHECK (max_duration_s > 0),
    -- whether POST .../recording may pause it (e.g. while card numbers are read out)
    pause_allowed  boolean NOT NULL DEFAULT true,
    is_default     boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    UNIQUE NULLS NOT DISTINCT (tenant_id, provider_id, direction),
    FOREIGN KEY (tenant_id, provider_id) REFERENCES voip_provider (tenant_id, id)
        ON DELETE CASCADE,
    CHECK (NOT is_default OR (provider_id IS NULL AND direction IS NULL))
);
CREATE UNIQUE INDEX call_recording_config_one_default_idx
    ON call_recording_config (tenant_id) WHERE is_default;

-- RTCP samples during a call (is_final = false) and the end-of-call summary
-- (RTPAUDIOQOS, is_final = true), per leg. Counts are cumulative since the leg started.
CREATE TABLE call_quality_metric (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    session_id      uuid NOT NULL,
    channel_id      text NOT NULL,
    leg             call_leg NOT NULL,
    sampled_at      timestamptz NOT NULL DEFAULT now(),
    is_final        boolean NOT NULL DEFAULT false,
    rx_packets      bigint CHECK (rx_packets >= 0),
    tx_packets      bigint CHECK (tx_packets >= 0),
    -- lost on the way to us / lost on the way to the peer (as its RTCP reports)
    rx_lost_packets bigint CHECK (rx_lost_packets >= 0),
    tx_lost_packets bigint CHECK (tx_lost_packets >= 0),
    jitter_ms       numeric(10, 3) CHECK (jitter_ms >= 0),
    rtt_ms          numeric(10, 3) CHECK (rtt_ms >= 0),
    -- estimated from loss, jitter and RTT (E-model); NULL when there was too little data
    mos             numeric(3, 2) CHECK (mos BETWEEN 1 AND 5),
    codec           text,
    raw             jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(raw) = 'object'),
    FOREIGN KEY (tenant_id, session_id) REFERENCES click_to_call_session (tenant_id, id)
        ON DELETE CASCADE
);
CREATE INDEX call_quality_metric_session_idx ON call_quality_metric (session_id, sampled_at);
CREATE INDEX call_quality_metric_final_idx
    ON call_quality_metric (tenant_id, sampled_at DESC) WHERE is_final;

-- ---------------------------------------------------------------------------------------
-- Compliance and caller ID
-- ---------------------------------------------------------------------------------------

-- A number may sit on several lists; which list wins is the compliance rules' decision.
CREATE TABLE phone_number_list (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    list_type    text NOT NULL CHECK (list_type IN ('dnc', 'blocklist', 'allowlist', 'vip')),
    phone_number e164 NOT NULL,
    reason       text,
    -- where the entry came from: 'api', 'import', 'ivr_opt_out', 'national_dnc', ...
    source       text NOT NULL DEFAULT 'api',
    -- NULL never expires; an expired entry is ignored (and purged later)
    expires_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, list_type, phone_number)
);
-- the pre-dial check looks a number up on all lists at once
CREATE INDEX phone_number_list_number_idx ON phone_number_list (tenant_id, phone_number);

-- Which caller ID a call presents: the active profile with the lowest priority whose
-- match_prefix the customer number starts with (NULL matches all), else the default.
CREATE TABLE caller_id_profile (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    name            text NOT NULL,
    -- presented for 'fixed', and when the pool has nothing better
    caller_id       e164 NOT NULL,
    is_default      boolean NOT NULL DEFAULT false,
    -- only for calls carried by this provider (a trunk may only present its own DIDs)
    provider_id     uuid,
    match_prefix    text CHECK (match_prefix ~ '^\+[0-9]{1,14}$'),
    priority        integer NOT NULL DEFAULT 100 CHECK (priority >= 0),
    -- local_presence picks the pool number sharing the longest prefix with the customer
    rotation        text NOT NULL DEFAULT 'fixed'
                        CHECK (rotation IN ('fixed', 'round_robin', 'local_presence')),
    pool            jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (
                        jsonb_typeof(pool) = 'array'
                        AND NOT jsonb_path_exists(pool,
                            '$[*] ? (@.type() != "string" || !(@ like_regex "^\\+[1-9][0-9]{6,14}$"))')),
    -- round_robin position, advanced with UPDATE ... RETURNING so engines sharing the
    -- database share one rotation
    rotation_cursor bigint NOT NULL DEFAULT 0,
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, provider_id) REFERENCES voip_provider (tenant_id, id)
        ON DELETE CASCADE,
    CHECK (rotation = 'fixed' OR jsonb_array_length(pool) > 0)
);
CREATE UNIQUE INDEX caller_id_profile_one_default_idx
    ON caller_id_profile (tenant_id) WHERE is_default;
CREATE INDEX caller_id_profile_match_idx
    ON caller_id_profile (tenant_id, priority, id) WHERE is_active;

-- Checked before every outbound leg is dialled; a 'reject' that applies makes the
-- session 'rejected', a 'warn' is only logged as an event.
CREATE TABLE call_compliance_rule (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    name                 text NOT NULL,
    description          text NOT NULL DEFAULT '',
    rule_type            text NOT NULL CHECK (rule_type IN
                             ('calling_hours', 'dnc_check', 'max_attempts', 'consent_required',
                              'country_block')),
    is_active            boolean NOT NULL DEFAULT true,
    priority             integer NOT NULL DEFAULT 100 CHECK (priority >= 0),
    -- destination country (from the customer number) the rule applies to; NULL = all
    country_code         char(2) CHECK (country_code ~ '^[A-Z]{2}$'),
    -- IANA zone the calling hours are in; NULL = the destination number's own zone
    timezone             text CHECK (timezone ~ '^[A-Za-z][A-Za-z0-9_+/-]{0,63}$'),
    -- window in local time; allowed_start > allowed_end wraps past midnight
    allowed_start        time,
    allowed_end          time,
    -- ISO weekdays, 1 = Monday .. 7 = Sunday; NULL = every day
    allowed_days         smallint[] CHECK (cardinality(allowed_days) > 0
                             AND array_position(allowed_days, NULL) IS NULL
                             AND allowed_days <@ '{1,2,3,4,5,6,7}'::smallint[]),
    -- dialled attempts to the same customer number per local day
    max_attempts_per_day integer CHECK (max_attempts_per_day > 0),
    -- dnc_check: {"lists": ["dnc", "blocklist"]}; consent_required: {"metadata_key": ...}
    params               jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(params) = 'object'),
    action               text NOT NULL DEFAULT 'reject' CHECK (action IN ('reject', 'warn')),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id),
    CHECK ((allowed_start IS NULL) = (allowed_end IS NULL)),
    CHECK (allowed_start IS DISTINCT FROM allowed_end OR allowed_start IS NULL),
    CHECK (rule_type <> 'calling_hours' OR allowed_start IS NOT NULL),
    CHECK (rule_type <> 'max_attempts' OR max_attempts_per_day IS NOT NULL),
    CHECK (rule_type <> 'country_block' OR country_code IS NOT NULL)
);
CREATE INDEX call_compliance_rule_eval_idx
    ON call_compliance_rule (tenant_id, priority, id) WHERE is_active;

-- max_attempts counts a tenant's recent sessions to one customer number
CREATE INDEX click_to_call_session_customer_idx
    ON click_to_call_session (tenant_id, customer_number, created_at DESC);

-- ---------------------------------------------------------------------------------------
-- Rating and billing
-- ---------------------------------------------------------------------------------------

-- The rate for a leg is the row with the longest destination_prefix that the dialled
-- number starts with, effective at answer time, for the leg's provider (or any provider,
-- provider_id NULL); lower priority breaks ties. Look-up: destination_prefix = ANY(every
-- prefix of the number), which the (tenant_id, destination_prefix) index serves.
-- Overlapping effective ranges are not prevented here (that needs btree_gist).
CREATE TABLE call_rate_config (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id             uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    name                  text NOT NULL DEFAULT '',
    provider_id           uuid,
    -- '+' alone is the catch-all
    destination_prefix    text NOT NULL CHECK (destination_prefix ~ '^\+[0-9]{0,15}$'),
    -- of the leg, not the session: both legs of a click-to-call are outbound
    direction             text NOT NULL DEFAULT 'outbound' CHECK (direction IN ('inbound', 'outbound')),
    -- in 10^-rate_scale minor units, so sub-cent carrier rates are exact
    -- (0.85 cents/min = 85 with rate_scale 2); amounts are rounded up to whole minor units
    rate_per_minute_minor bigint NOT NULL CHECK (rate_per_minute_minor >= 0),
    rate_scale            smallint NOT NULL DEFAULT 0 CHECK (rate_scale BETWEEN 0 AND 6),
    -- charged once per answered leg, in whole minor units
    connection_fee_minor  bigint NOT NULL DEFAULT 0 CHECK (connection_fee_minor >= 0),
    currency              currency_code NOT NULL,
    -- billed seconds are max(min_duration_s, duration) rounded up to the increment
    billing_increment_s   integer NOT NULL DEFAULT 60 CHECK (billing_increment_s BETWEEN 1 AND 3600),
    min_duration_s        integer NOT NULL DEFAULT 0 CHECK (min_duration_s >= 0),
    priority              integer NOT NULL DEFAULT 100 CHECK (priority >= 0),
    effective_from        timestamptz NOT NULL DEFAULT now(),
    effective_to          timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, provider_id) REFERENCES voip_provider (tenant_id, id),
    CHECK (effective_to IS NULL OR effective_to > effective_from)
);
CREATE INDEX call_rate_config_lookup_idx
    ON call_rate_config (tenant_id, destination_prefix, direction, effective_from DESC);

-- One line per billed leg. The rate is copied in, so a later rate change never alters
-- what was billed. Lines are money: deleting a billed session is refused.
CREATE TABLE call_usage_billing (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id             uuid NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    session_id            uuid NOT NULL,
    leg                   call_leg NOT NULL,
    rate_config_id        uuid,           -- NULL: no rate matched, billed at zero
    provider_id           uuid,
    destination_number    text,           -- as dialled (agent legs may be endpoints)
    matched_prefix        text,
    duration_s            integer NOT NULL CHECK (duration_s >= 0),   -- answered time
    billable_seconds      integer NOT NULL CHECK (billable_seconds >= 0),
    rate_per_minute_minor bigint NOT NULL CHECK (rate_per_minute_minor >= 0),
    rate_scale            smallint NOT NULL DEFAULT 0 CHECK (rate_scale BETWEEN 0 AND 6),
    connection_fee_minor  bigint NOT NULL DEFAULT 0 CHECK (connection_fee_minor >= 0),
    amount_minor          bigint NOT NULL CHECK (amount_minor >= 0),
    currency              currency_code NOT NULL,
    billed_at             timestamptz NOT NULL DEFAULT now(),
    -- set when the line is put on an invoice in the ERP
    invoice_ref           text,
    UNIQUE (session_id, leg),
    FOREIGN KEY (tenant_id, session_id) REFERENCES click_to_call_session (tenant_id, id),
    FOREIGN KEY (tenant_id, rate_config_id) REFERENCES call_rate_config (tenant_id, id),
    FOREIGN KEY (tenant_id, provider_id) REFERENCES voip_provider (tenant_id, id)
);
CREATE INDEX call_usage_billing_tenant_idx ON call_usage_billing (tenant_id, billed_at);
CREATE INDEX call_usage_billing_uninvoiced_idx
    ON call_usage_billing (tenant_id, billed_at) WHERE invoice_ref IS NULL;
