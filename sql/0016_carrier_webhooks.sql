-- ctc:no-transaction
-- 0016_carrier_webhooks: a carrier's verified webhooks are deduplicated by the carrier's
-- own key (Twilio CallSid + SequenceNumber, Vonage uuid + status + timestamp, Exotel
-- CallSid + EventType, mCube callid + dialstatus): the unique index makes a replay a
-- logged no-op even when two copies arrive at once. Only verified rows carry the key.
-- Built CONCURRENTLY (the log grows with every call), so the file is safe to run again.

ALTER TABLE click_to_call_webhook_log ADD COLUMN IF NOT EXISTS dedupe_key text;

DROP INDEX CONCURRENTLY IF EXISTS click_to_call_webhook_log_dedupe_idx;
CREATE UNIQUE INDEX CONCURRENTLY click_to_call_webhook_log_dedupe_idx
    ON click_to_call_webhook_log (provider_id, dedupe_key) WHERE dedupe_key IS NOT NULL;

-- a webhook finds its session by the provider and the carrier's call id
DROP INDEX CONCURRENTLY IF EXISTS click_to_call_session_provider_call_id_idx;
CREATE INDEX CONCURRENTLY click_to_call_session_provider_call_id_idx
    ON click_to_call_session (provider_id, provider_call_id) WHERE provider_call_id IS NOT NULL;
