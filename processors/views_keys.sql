-- modelog keys views: signing keys and the require-signatures switch (decision 0015). Pure functions of
-- the base tables (log_*); `modelog rebuild` reproduces them. Only events the processor admitted are here:
-- a registration or revocation by a non-admin, or signed by an unknown key, is a dead letter instead.
-- Every key event is keyed `keys`, so they are in one partition, in log order.

-- signing_keys: one row per registered key (the first registration of a key_id wins).
--   key_id (ed25519:<32 hex>), principal (whom it speaks for), capabilities (VARCHAR[]: delegate = may sign
--   for principals it authenticated, the HTTP server's key), bootstrap (the first admin's key, modelog init),
--   description, public_key (raw 32 bytes), registered_at (log time), registered_by, revoked_at (NULL: not
--   revoked; the record's log time from which its signatures are refused), revoked_by, revoke_reason,
--   status: active | revoked.
CREATE OR REPLACE VIEW signing_keys AS
WITH reg AS (
    SELECT k.*, coalesce(e.logged_at, e.occurred_at) AS log_time FROM log_keys k JOIN log_events e USING (event_id)
    QUALIFY row_number() OVER (PARTITION BY k.key_id ORDER BY coalesce(e.logged_at, e.occurred_at), k.event_id) = 1
), rev AS (
    SELECT r.*, coalesce(e.logged_at, e.occurred_at) AS log_time FROM log_key_revocations r
    JOIN log_events e USING (event_id)
    QUALIFY row_number() OVER (PARTITION BY r.key_id ORDER BY coalesce(e.logged_at, e.occurred_at), r.event_id) = 1
)
SELECT reg.key_id, reg.principal, reg.capabilities, reg.bootstrap, reg.description, reg.public_key,
       reg.log_time AS registered_at, reg.registered_by, rev.log_time AS revoked_at, rev.revoked_by,
       rev.reason AS revoke_reason, CASE WHEN rev.key_id IS NULL THEN 'active' ELSE 'revoked' END AS status
FROM reg LEFT JOIN rev USING (key_id);

-- signature_policy: every change of the require-signatures switch, in log time: require_signatures
--   (true: unsigned events logged from set_at on are refused), set_at (log time), set_by, event_id.
--   The switch in force is the last row; none: unsigned events are accepted (shown unverified).
CREATE OR REPLACE VIEW signature_policy AS
SELECT p.require_signatures, coalesce(e.logged_at, e.occurred_at) AS set_at, p.set_by, p.event_id
FROM log_signature_policy p JOIN log_events e USING (event_id);
