-- modelog privacy views: fields marked sensitive and subjects erased (decision 0018). Pure functions of
-- the base tables (log_*); `modelog rebuild` reproduces them. No plaintext and no data key is in either.

-- sensitive_fields: the param and tag keys whose values, and the datasets whose versions' URIs, are personal
--   data, as the latest global PolicySet that set the list says (by log time). Writers seal these values with
--   the subject's data key; and the models' monitored feature columns whose values are. kind (param | tag |
--   dataset | feature), key (the param or tag key, the dataset name, the feature column), set_at (log time of
--   that policy), set_by, model (feature: the model; else NULL). No rows: nothing is marked.
CREATE OR REPLACE VIEW sensitive_fields AS
WITH latest AS (
    SELECT f.event_id FROM log_sensitive_fields f JOIN log_events e USING (event_id)
    ORDER BY coalesce(e.logged_at, e.occurred_at) DESC, f.event_id DESC LIMIT 1
)
SELECT f.kind, f.key, coalesce(e.logged_at, e.occurred_at) AS set_at, f.set_by, f.model
FROM log_sensitive_fields f SEMI JOIN latest USING (event_id) JOIN log_events e USING (event_id)
WHERE f.kind IS NOT NULL;

-- erasures: one row per data key erased: subject (its opaque id), key_id (dek-<16 hex>; NULL: the key store
--   had no key for it), reason, erased_at (when the erasure was requested), erased_by, event_id. Every value
--   sealed with key_id shows as '[erased]' in params, tags and dataset versions' uri.
CREATE OR REPLACE VIEW erasures AS
SELECT subject, key_id, reason, erased_at, erased_by, event_id FROM log_erasures;
