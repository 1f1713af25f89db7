-- 0019_provider_weight: the share of calls a provider takes among providers of equal priority.
--
-- Failover orders a tenant's active providers by priority (lower first), the tenant's
-- default first among equals, then draws the first of each priority by weight
-- (engine/domain/failover.py order_candidates); weight 0 is tried only after the others.
-- voip_provider is a small table (a handful of rows per tenant): a column with a constant
-- default is metadata-only since PostgreSQL 11.

SET LOCAL lock_timeout = '5s';

ALTER TABLE voip_provider ADD COLUMN weight integer NOT NULL DEFAULT 1
    CONSTRAINT voip_provider_weight_check CHECK (weight >= 0 AND weight <= 1000);
