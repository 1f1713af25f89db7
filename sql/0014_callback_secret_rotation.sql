-- 0014_callback_secret_rotation: a tenant's callback secret can be rotated with a grace
-- period (`ctc tenant rotate-secret`, POST /api/v1/tenant/callback-secret/rotate).
--
-- While previous_callback_secret_until is in the future, every callback is signed with
-- both secrets (two v1= values in X-CTC-Signature), so the ERP can switch its verifier
-- to the new secret at any moment of the grace period without refusing a callback.
-- Metadata-only on a live PBX (nullable columns without a default); lock_timeout makes
-- the file fail rather than queue calls behind a long query (run it again).

SET LOCAL lock_timeout = '5s';

ALTER TABLE tenant
    ADD COLUMN previous_callback_secret text,
    ADD COLUMN previous_callback_secret_until timestamptz;

COMMENT ON COLUMN tenant.previous_callback_secret IS
    'The callback secret before the last rotation, sealed like callback_secret; callbacks '
    'are signed with it too until previous_callback_secret_until';
