-- modelog access views: API tokens. Pure functions of the base tables (log_*); `modelog rebuild`
-- reproduces them row for row. A token's events are keyed token:<token_id>, so its issue and its
-- revocations are in one partition, in log order. Only a token's SHA-256 is ever stored.

-- api_tokens: one row per issued token (the first TokenIssued of a token_id in log order wins: a later
--   one cannot replace its hash). Revoked tokens stay, with revoked_at set.
--   token_id, principal, roles (VARCHAR[]), token_hash (sha256 of the token, hex), description,
--   issued_at, issued_by, expires_at (NULL: never), revoked_at (NULL: not revoked; the first revocation),
--   revoked_by, revoke_reason. A revocation of a token_id never issued shows nowhere.
--   Active = revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now, UTC).
CREATE OR REPLACE VIEW api_tokens AS
WITH issued AS (
    SELECT t.* FROM log_tokens t JOIN log_events e USING (event_id)
    QUALIFY row_number() OVER (PARTITION BY t.token_id ORDER BY e."partition", e."offset", t.event_id) = 1
), revoked AS (
    SELECT r.* FROM log_token_revocations r JOIN log_events e USING (event_id)
    QUALIFY row_number() OVER (PARTITION BY r.token_id ORDER BY e."partition", e."offset", r.event_id) = 1
)
SELECT i.token_id, i.principal, i.roles, i.token_hash, i.description, i.issued_at, i.issued_by, i.expires_at,
       r.revoked_at, r.revoked_by, r.reason AS revoke_reason
FROM issued i LEFT JOIN revoked r USING (token_id);
