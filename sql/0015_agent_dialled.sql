-- 0015: calls an agent places from the desk phone ([ctc-agents] in dialplan/extensions.conf,
-- Stasis(ctc,agent,<number>)) are sessions with direction 'outbound'.
--
-- The digits the agent dialled are kept as dialed_number. A number phonenumbers refuses
-- ends the session 'rejected' before anything is dialled, and such a session has no E.164
-- customer_number: an outbound session may lack one, a click-to-call still may not.

ALTER TABLE click_to_call_session
    DROP CONSTRAINT click_to_call_session_numbers_check,
    ADD CONSTRAINT click_to_call_session_numbers_check CHECK (
        direction = 'inbound'
        OR (agent_number IS NOT NULL
            AND (customer_number IS NOT NULL OR direction = 'outbound'))
    );
