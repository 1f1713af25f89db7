-- ctc:no-transaction
-- 0015: calls an agent places from the desk phone ([ctc-agents] in dialplan/extensions.conf,
-- Stasis(ctc,agent,<number>)) are sessions with direction 'outbound'.
--
-- The digits the agent dialled are kept as dialed_number. A number phonenumbers refuses
-- ends the session 'rejected' before anything is dialled, and such a session has no E.164
-- customer_number: an outbound session may lack one, a click-to-call still may not.
--
-- Written for a live PBX's biggest table: the new check (looser than the old one) is added
-- NOT VALID, which holds the table's lock for milliseconds, then validated on its own,
-- which scans the rows without blocking calls' writes. lock_timeout makes the file fail
-- (run `ctc db migrate` again) rather than queue calls behind a long-running query; the
-- file is safe to run again from the start.

SET lock_timeout = '5s';
ALTER TABLE click_to_call_session
    DROP CONSTRAINT IF EXISTS click_to_call_session_numbers_check,
    ADD CONSTRAINT click_to_call_session_numbers_check CHECK (
        direction = 'inbound'
        OR (agent_number IS NOT NULL
            AND (customer_number IS NOT NULL OR direction = 'outbound'))
    ) NOT VALID;
ALTER TABLE click_to_call_session VALIDATE CONSTRAINT click_to_call_session_numbers_check;
RESET lock_timeout;
