-- 0021_route_by_conditions: an IVR transfer to routing_rule "*" names no rule: the tenant's
-- first rule (by priority) whose conditions and schedule hold for the call decides, as
-- `ctc routing explain` shows (engine/app/ivr_calls.py). Such an option or fallback has no
-- routing_rule_id; every other routing_rule target still needs one.
--
-- lock_timeout: the file fails (run `ctc db migrate` again) rather than queue a live PBX's
-- writes behind a long-running query. Both tables are small (menus, not calls).

SET LOCAL lock_timeout = '5s';

-- the checks 0002 created unnamed: "routing_rule target <=> a rule id"
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT conrelid::regclass AS tbl, conname FROM pg_constraint
        WHERE contype = 'c'
          AND conrelid IN ('ivr_menu'::regclass, 'ivr_menu_option'::regclass)
          AND pg_get_constraintdef(oid) ~ 'routing_rule_id IS NOT NULL'
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.tbl, c.conname);
    END LOOP;
END $$;

ALTER TABLE ivr_menu_option ADD CONSTRAINT ivr_menu_option_routing_rule_check CHECK (
    (transfer_target_type IS NOT DISTINCT FROM 'routing_rule'
        AND transfer_target IS DISTINCT FROM '*') = (routing_rule_id IS NOT NULL)
);
ALTER TABLE ivr_menu ADD CONSTRAINT ivr_menu_fallback_routing_rule_check CHECK (
    (fallback_transfer_target_type IS NOT DISTINCT FROM 'routing_rule'
        AND fallback_transfer_target IS DISTINCT FROM '*') = (fallback_routing_rule_id IS NOT NULL)
);
