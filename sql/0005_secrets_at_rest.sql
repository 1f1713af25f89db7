-- 0005_secrets_at_rest: stored secrets become ciphertext (engine/secrets.py).
--
-- Secret columns hold text: either ``ctc-enc:v1:<key id>:<Fernet token>`` (sealed by the
-- engine under the key in CTC_SECRET_KEY or secrets.key_file) or, for rows written before
-- this migration, the old plaintext; ``ctc secrets rotate`` seals those. The database never
-- sees a key, so this migration cannot encrypt anything itself.
--
--   * tenant.callback_secret       unchanged type (text); new tenants get a value generated
--                                   and sealed by the engine (the column DEFAULT stays for
--                                   rows inserted by hand, which are then plaintext)
--   * voip_provider.webhook_secret unchanged type (text), NULL = none
--   * voip_provider.credentials    jsonb -> text: a JSON object cannot hold ciphertext.
--                                   NULL = none (was '{}'); an existing object becomes its
--                                   JSON text, which `ctc secrets rotate` then seals.

ALTER TABLE voip_provider DROP CONSTRAINT voip_provider_credentials_check;
ALTER TABLE voip_provider ALTER COLUMN credentials DROP DEFAULT;
ALTER TABLE voip_provider ALTER COLUMN credentials DROP NOT NULL;
ALTER TABLE voip_provider ALTER COLUMN credentials TYPE text
    USING CASE WHEN credentials = '{}'::jsonb THEN NULL ELSE credentials::text END;

COMMENT ON COLUMN voip_provider.credentials IS
    'provider secrets as JSON, sealed by the engine (ctc-enc:v1:...); NULL = none';
COMMENT ON COLUMN voip_provider.webhook_secret IS
    'sealed by the engine (ctc-enc:v1:...); plaintext only in rows older than 0005';
COMMENT ON COLUMN tenant.callback_secret IS
    'HMAC key of the tenant''s callbacks, sealed by the engine (ctc-enc:v1:...) when a key is configured';
