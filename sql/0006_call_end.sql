-- 0006: a call's end as Asterisk saw it, or marked as estimated.
--
-- When the engine is away (crashed, restarting) while a party hangs up, nobody receives
-- the hangup event. The resync after the restart takes the real end time and Q.850 cause
-- from the record Asterisk's hangup handler keeps (dialplan context ctc-hangup, AstDB
-- family ctc_end). Where no such record exists, the end is the moment the resync noticed
-- the channel gone: ended_at, talk_ms and ring_ms are then upper bounds, and billing must
-- know it. end_estimated says so.

ALTER TABLE click_to_call_session
    ADD COLUMN end_estimated boolean NOT NULL DEFAULT false;

COMMENT ON COLUMN click_to_call_session.end_estimated IS
    'true when ended_at (and talk_ms, ring_ms) were taken when the engine noticed the call '
    'gone after a restart or reconnect, not from Asterisk: an upper bound, not a measurement';
