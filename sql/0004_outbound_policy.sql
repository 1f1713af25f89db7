-- 0004_outbound_policy: where a tenant's status callbacks and IVR lookups may go.
-- The engine refuses non-global destinations (loopback, link-local, private, ...; see
-- engine/domain/netpolicy.py) unless the tenant allows them here, e.g. '{10.20.0.0/16}'
-- for an ERP on the private network. Set with `ctc tenant create/update --allow-cidr`.

ALTER TABLE tenant
    ADD COLUMN outbound_allow_cidrs cidr[] NOT NULL DEFAULT '{}';
