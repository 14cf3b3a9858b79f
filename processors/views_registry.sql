-- modelog registry views: models, versions, stages, aliases, requests and decisions, deployments, access.
-- Pure functions of the base tables (log_*); `modelog rebuild` reproduces them row for row.
-- Version numbers come from log order: the n-th registration of a model (all of a model's events are in
-- one partition, keyed model:<name>) is version n. Decisions: the recorded RequestDecided in the log wins
-- over the processor's own computed row for the same request.

-- registered_versions: every registration ever, deleted ones included.
--   model, version, run_id, artifact, uri, semver, description (at registration), tags (at registration),
--   registered_at, registered_by, event_id, log_partition, log_offset
CREATE OR REPLACE VIEW registered_versions AS
SELECT v.model,
       row_number() OVER (PARTITION BY v.model ORDER BY e."partition", e."offset") AS version,
       v.run_id, v.artifact, v.uri, v.semver, v.description, v.tags, v.registered_at, v.registered_by,
       v.event_id, e."partition" AS log_partition, e."offset" AS log_offset
FROM log_model_versions v JOIN log_events e USING (event_id);

-- decisions: one row per decided request: outcome (APPROVED|REJECTED), reason, decided_at, the rules
--   evaluated and the evidence they saw; source says whether the row is the log's record or the
--   processor's own computation not yet seen back on the log.
CREATE OR REPLACE VIEW decisions AS
SELECT request_id, model, outcome, reason, decided_at, rules, evidence, source, event_id, trigger_offset
FROM log_decisions
QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY CASE source WHEN 'recorded' THEN 0 ELSE 1 END,
                                                            event_id) = 1;

-- decision_effects: the state changes of approved decisions, in log order (trigger_offset, seq).
--   kind STAGE (version -> stage), ALIAS (alias -> version; version NULL removes it), DELETED (tombstone)
CREATE OR REPLACE VIEW decision_effects AS
SELECT x.model, x.request_id, x.seq, x.kind, x.version, x.stage, x.alias, x.decided_at, x.trigger_offset
FROM log_decision_effects x
JOIN decisions d ON x.request_id = d.request_id AND x.source = d.source
WHERE d.outcome = 'APPROVED';

-- stage_history: every stage a version has held, from valid_from until valid_to (NULL: still holds).
--   Versions start in 'development'; 'deleted' is the tombstone. request_id: the decision that moved it.
CREATE OR REPLACE VIEW stage_history AS
WITH changes AS (
    SELECT model, version, 'development' AS stage, registered_at AS changed_at, log_offset AS ord, -1 AS seq,
           NULL::VARCHAR AS request_id
    FROM registered_versions
    UNION ALL
    SELECT model, version, CASE kind WHEN 'DELETED' THEN 'deleted' ELSE stage END, decided_at, trigger_offset,
           seq, request_id
    FROM decision_effects WHERE kind IN ('STAGE', 'DELETED')
)
SELECT model, version, stage, changed_at AS valid_from,
       lead(changed_at) OVER (PARTITION BY model, version ORDER BY ord, seq) AS valid_to,
       request_id, ord AS log_offset, seq
FROM changes;

-- alias_history: every alias assignment: alias -> version from valid_from until valid_to (NULL: current).
--   Removals end an assignment and are not rows of their own.
CREATE OR REPLACE VIEW alias_history AS
WITH moves AS (
    SELECT model, alias, version, decided_at, request_id,
           lead(decided_at) OVER (PARTITION BY model, alias ORDER BY trigger_offset, seq) AS next_at
    FROM decision_effects WHERE kind = 'ALIAS'
)
SELECT model, alias, version, decided_at AS valid_from, next_at AS valid_to, request_id
FROM moves WHERE version IS NOT NULL;

-- model_aliases: the current holder of each alias.
CREATE OR REPLACE VIEW model_aliases AS
SELECT model, alias, version, valid_from AS since, request_id FROM alias_history WHERE valid_to IS NULL;

-- model_versions: current state of every version that is not deleted:
--   model, version, stage, aliases (sorted), semver, run_id, artifact, uri, description (latest annotation,
--   else the registration's), registered_at, registered_by, stage_since
CREATE OR REPLACE VIEW model_versions AS
WITH cur AS (
    SELECT model, version, stage, valid_from FROM stage_history WHERE valid_to IS NULL
    QUALIFY row_number() OVER (PARTITION BY model, version ORDER BY log_offset DESC, seq DESC) = 1
), descr AS (
    SELECT model, version, arg_max(description, (annotated_at, event_id)) AS description
    FROM log_model_annotations WHERE description IS NOT NULL AND version IS NOT NULL GROUP BY ALL
), al AS (
    SELECT model, version, list(alias ORDER BY alias) AS aliases FROM model_aliases GROUP BY ALL
)
SELECT r.model, r.version, cur.stage, coalesce(al.aliases, []::VARCHAR[]) AS aliases, r.semver, r.run_id,
       r.artifact, r.uri, coalesce(descr.description, r.description) AS description,
       r.registered_at, r.registered_by, cur.valid_from AS stage_since
FROM registered_versions r
JOIN cur USING (model, version)
LEFT JOIN descr USING (model, version)
LEFT JOIN al USING (model, version)
WHERE cur.stage <> 'deleted';

-- models: one row per model with at least one version that is not deleted:
--   latest_version, version_count, production_version (NULL if none), aliases (alias=version),
--   description (latest model-level annotation), created_at, created_by, updated_at
CREATE OR REPLACE VIEW models AS
WITH descr AS (
    SELECT model, arg_max(description, (annotated_at, event_id)) AS description
    FROM log_model_annotations WHERE description IS NOT NULL AND version IS NULL GROUP BY ALL
), first_reg AS (
    SELECT model, min(registered_at) AS created_at, arg_min(registered_by, version) AS created_by
    FROM registered_versions GROUP BY ALL
)
SELECT v.model, max(v.version) AS latest_version, count(*) AS version_count,
       max(v.version) FILTER (WHERE v.stage = 'production') AS production_version,
       (SELECT list(a.alias || '=' || a.version ORDER BY a.alias) FROM model_aliases a WHERE a.model = v.model) AS aliases,
       any_value(descr.description) AS description, any_value(f.created_at) AS created_at,
       any_value(f.created_by) AS created_by, max(greatest(v.registered_at, v.stage_since)) AS updated_at
FROM model_versions v LEFT JOIN descr USING (model) LEFT JOIN first_reg f USING (model)
GROUP BY v.model;

-- model_annotations: current tags and annotations of models (version NULL) and versions:
--   kind ('tag'|'annotation'), key, value, set_at, set_by. Registration tags count as tags set then.
CREATE OR REPLACE VIEW model_annotations AS
WITH facts AS (
    SELECT model, version, 'tag' AS kind, unnest(map_keys(tags)) AS key, unnest(map_values(tags)) AS value,
           registered_at AS set_at, registered_by AS set_by, event_id
    FROM registered_versions
    UNION ALL
    SELECT model, version, 'tag', unnest(map_keys(tags)), unnest(map_values(tags)), annotated_at, actor, event_id
    FROM log_model_annotations
    UNION ALL
    SELECT model, version, 'annotation', unnest(map_keys(annotations)), unnest(map_values(annotations)),
           annotated_at, actor, event_id
    FROM log_model_annotations
    UNION ALL
    SELECT model, version, 'tag', unnest(removed_tags), NULL, annotated_at, actor, event_id
    FROM log_model_annotations
)
SELECT model, version, kind, key, value, set_at, set_by
FROM facts
QUALIFY row_number() OVER (PARTITION BY model, version, kind, key ORDER BY set_at DESC, event_id DESC) = 1
    AND value IS NOT NULL;

-- requests: every governed change request and where it stands: status PENDING | APPROVED | REJECTED,
--   with the decision's reason and time.
CREATE OR REPLACE VIEW requests AS
SELECT q.request_id, q.model, q.action, q.version, q.stage, q.alias, q.comment, q.requested_at, q.requested_by,
       coalesce(d.outcome, 'PENDING') AS status, d.reason, d.decided_at
FROM log_requests q LEFT JOIN decisions d USING (request_id)
QUALIFY row_number() OVER (PARTITION BY q.request_id ORDER BY q.requested_at) = 1;

-- approvals: every verdict given on a request (APPROVE|REJECT), by whom and when.
CREATE OR REPLACE VIEW approvals AS
SELECT request_id, model, verdict, approver, comment, given_at, event_id FROM log_approvals;

-- deployments: every deployment ever recorded (a rollback is a later row pointing at an earlier version):
--   model, version, environment, endpoint, deployed_at, deployed_by, rollback_of, comment,
--   replaced_at (when the next deployment to the same environment took over; NULL: current)
CREATE OR REPLACE VIEW deployments AS
SELECT model, version, environment, endpoint, deployed_at, deployed_by, rollback_of, comment,
       lead(deployed_at) OVER (PARTITION BY model, environment ORDER BY deployed_at, event_id) AS replaced_at,
       event_id
FROM log_deployments;

-- current_deployments: what serves in each environment now.
CREATE OR REPLACE VIEW current_deployments AS
SELECT model, version, environment, endpoint, deployed_at, deployed_by, rollback_of FROM deployments
WHERE replaced_at IS NULL;

-- role_assignments: roles held now: principal, role, model (NULL: not one model), granted_at, granted_by,
--   experiment (NULL: not one experiment). Both NULL: the role holds everywhere (global).
CREATE OR REPLACE VIEW role_assignments AS
SELECT principal, role, model, changed_at AS granted_at, changed_by AS granted_by, experiment
FROM log_access
QUALIFY row_number() OVER (PARTITION BY principal, role, coalesce(model, '*'), coalesce(experiment, '*')
                           ORDER BY changed_at DESC, event_id DESC) = 1
    AND granted;

-- policies: the rules in force: scope ('*' = every model, else a model name), the rule, who set it, when,
--   approvals (APPROVAL rules: distinct approvers required, 1 unless set).
CREATE OR REPLACE VIEW policies AS
WITH cur AS (
    SELECT scope, event_id, set_at, set_by FROM log_policies
    QUALIFY row_number() OVER (PARTITION BY scope ORDER BY set_at DESC, event_id DESC) = 1
)
SELECT c.scope, r.seq, r.name, r.kind, r.action, r.stage, r.role, r.metric, r.op, r.threshold, c.set_at, c.set_by,
       coalesce(r.approvals, CASE WHEN r.kind = 'APPROVAL' THEN 1 END) AS approvals
FROM cur c JOIN log_policy_rules r USING (event_id);

-- model_lineage_edges: lineage the registry implies: run --produced--> model version,
--   model version --deployed--> deployment (model/environment). Same columns as lineage_edges.
CREATE OR REPLACE VIEW model_lineage_edges AS
SELECT 'run:' || run_id AS src, 'produced' AS relation, 'model:' || model || '/' || version AS dst,
       NULL::VARCHAR AS role, NULL::VARCHAR AS transform, NULL::VARCHAR AS code_ref,
       registered_at AS recorded_at, registered_by AS recorded_by, event_id
FROM registered_versions WHERE run_id IS NOT NULL
UNION ALL
SELECT 'model:' || model || '/' || version, 'deployed', 'deployment:' || model || '/' || environment,
       NULL, NULL, endpoint, deployed_at, deployed_by, event_id
FROM log_deployments;
