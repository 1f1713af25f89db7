-- 0003_inbound: sessions for inbound callers (IVR over Stasis or FastAGI).
-- A caller may present no number, or one that is not E.164 (an extension, "anonymous"):
-- customer_number stays E.164 when there is one, the raw caller ID is kept beside it.

ALTER TABLE click_to_call_session ALTER COLUMN customer_number DROP NOT NULL;
ALTER TABLE click_to_call_session ALTER COLUMN agent_number DROP NOT NULL;
ALTER TABLE click_to_call_session
    ADD COLUMN caller_number text,          -- the caller ID as received
    ADD COLUMN dialed_number text,          -- the number the caller dialled (DNID/extension)
    ADD COLUMN ivr_menu      text,          -- the menu the call entered
    ADD CONSTRAINT click_to_call_session_numbers_check CHECK (
        direction = 'inbound' OR (agent_number IS NOT NULL AND customer_number IS NOT NULL)
    );
