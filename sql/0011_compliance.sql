-- 0011_compliance: what compliance and caller-ID choice need beyond 0002's seed tables.
--
-- phone_number_list: an entry may be a prefix ('+1800' covers every US toll-free number),
-- so phone_number holds E.164 or an E.164 prefix; is_prefix says which. The pre-dial check
-- looks up every prefix of the number at once (phone_number = ANY(...)), which the
-- (tenant_id, phone_number) index serves.
SET LOCAL lock_timeout = '5s';

ALTER TABLE phone_number_list ALTER COLUMN phone_number TYPE text;
ALTER TABLE phone_number_list
    ADD COLUMN is_prefix boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT phone_number_list_number_check CHECK (
        CASE WHEN is_prefix THEN phone_number ~ '^\+[1-9][0-9]{0,14}$'
             ELSE phone_number ~ '^\+[1-9][0-9]{6,14}$' END);
ALTER TABLE phone_number_list DROP CONSTRAINT phone_number_list_tenant_id_list_type_phone_number_key;
ALTER TABLE phone_number_list
    ADD CONSTRAINT phone_number_list_entry_key UNIQUE (tenant_id, list_type, phone_number, is_prefix);

-- caller_id_profile: how many legs one number of the profile presents per UTC day (NULL:
-- no cap); a number at its cap is skipped in the rotation.
ALTER TABLE caller_id_profile
    ADD COLUMN daily_cap integer CHECK (daily_cap > 0);
