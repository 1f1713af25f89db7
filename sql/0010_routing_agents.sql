-- 0010_routing_agents: routing rules with several conditions at once, each tenant's
-- wrap-up time, and the engine's own agent states in the activity log.
--
-- lock_timeout: the file fails (run `ctc db migrate` again) rather than queue a live PBX's
-- writes behind a long-running query.

SET LOCAL lock_timeout = '5s';

-- Every condition in ``conditions`` must hold (a list: any of its values). Keys:
-- caller_prefix, callee_prefix (E.164 prefixes), caller_country, callee_country (ISO
-- 3166 alpha-2), dialed_number, ivr_choice, skill. ``schedule`` may now also carry
-- "holidays": ["2026-12-25", ...], dates (in the rule's time zone) the rule does not apply.
ALTER TABLE call_routing_rule
    ADD COLUMN conditions jsonb NOT NULL DEFAULT '{}'::jsonb
        CHECK (jsonb_typeof(conditions) = 'object');
ALTER TABLE call_routing_rule DROP CONSTRAINT call_routing_rule_match_type_check;
ALTER TABLE call_routing_rule ADD CONSTRAINT call_routing_rule_match_type_check
    CHECK (match_type IN ('caller_prefix', 'dialed_number', 'time_of_day', 'tenant_default',
                          'skill', 'conditions'));
ALTER TABLE call_routing_rule ADD CONSTRAINT call_routing_rule_match_conditions_check
    CHECK (match_type <> 'conditions' OR (conditions <> '{}'::jsonb AND match_value IS NULL));

-- Per tenant: how long an agent stays in wrap_up after a call before it is offered the
-- next (0: none). The zone a rule's schedule is read in when it names none is the tenant's
-- own (tenant.timezone, 0012: the same zone its stats are bucketed in).
CREATE TABLE tenant_routing_setting (
    tenant_id  uuid PRIMARY KEY REFERENCES tenant(id) ON DELETE CASCADE,
    wrap_up_s  integer NOT NULL DEFAULT 0 CHECK (wrap_up_s BETWEEN 0 AND 3600),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The engine logs 'ringing' when a routing rule offers an agent a call.
ALTER TABLE agent_activity_log DROP CONSTRAINT agent_activity_log_activity_check;
ALTER TABLE agent_activity_log ADD CONSTRAINT agent_activity_log_activity_check
    CHECK (activity IN ('login', 'logout', 'available', 'busy', 'break', 'wrap_up', 'on_call',
                        'offline', 'ringing'));
