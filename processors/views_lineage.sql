-- lineage views (see docs/views.md and docs/lineage.md): datasets, their versions, and the lineage graph.
-- Pure functions of the base tables log_dataset_versions, log_lineage, log_artifacts, log_events,
-- log_run_started. Node ids: run:<run_id>, dataset:<name>@<sha256>, model:<name>/<version>,
-- deployment:<model>/<environment>, artifact:<run_id>/<path>.

-- dataset_versions: one row per (dataset name, version); the version is the content's sha256.
--   name, version, node (dataset:<name>@<version>), then from the first time it was logged: uri, columns
--   (list of {name, type}), row_count (NULL if unknown), size_bytes, media_type, first_logged_at, first_logged_by;
--   over every time it was logged: last_logged_at, times_logged, description (latest non-null),
--   tags (of the latest logging that had any), derived_from (sorted node ids of its derived-from sources),
--   facets (JSON text, of the latest logging that had any: an OpenLineage dataset's namespace, name, version and
--   facets such as schema, dataSource, columnLineage; NULL for SDK loggings; see docs/openlineage.md).
CREATE OR REPLACE VIEW dataset_versions AS
WITH firsts AS (
    SELECT * FROM log_dataset_versions
    QUALIFY row_number() OVER (PARTITION BY dataset, version ORDER BY event_id) = 1
), agg AS (
    SELECT dataset, version, count(*) AS times_logged, max(logged_at) AS last_logged_at,
           arg_max(description, event_id) FILTER (WHERE description IS NOT NULL) AS description,
           arg_max(tags, event_id) FILTER (WHERE cardinality(tags) > 0) AS tags,
           arg_max(facets, event_id) FILTER (WHERE facets IS NOT NULL) AS facets
    FROM log_dataset_versions
    GROUP BY dataset, version
), derived AS (
    SELECT dst, list(DISTINCT src ORDER BY src) AS derived_from
    FROM log_lineage WHERE relation = 'derived'
    GROUP BY dst
)
SELECT f.dataset AS name, f.version, 'dataset:' || f.dataset || '@' || f.version AS node,
       f.uri, f.columns, f.row_count, f.size_bytes, f.media_type,
       f.logged_at AS first_logged_at, f.actor AS first_logged_by, a.last_logged_at, a.times_logged,
       a.description, coalesce(a.tags, MAP {}::MAP(VARCHAR, VARCHAR)) AS tags,
       coalesce(d.derived_from, []::VARCHAR[]) AS derived_from, a.facets
FROM firsts f
JOIN agg a USING (dataset, version)
LEFT JOIN derived d ON d.dst = 'dataset:' || f.dataset || '@' || f.version;

-- datasets: one row per dataset name.
--   name, latest_version / latest_node / latest_uri (the version first seen most recently),
--   version_count, times_logged (all versions), first_logged_at, last_logged_at,
--   description (the latest non-null one of any version)
CREATE OR REPLACE VIEW datasets AS
WITH latest AS (
    SELECT name, version, node, uri FROM dataset_versions
    QUALIFY row_number() OVER (PARTITION BY name ORDER BY first_logged_at DESC, version DESC) = 1
), described AS (
    SELECT dataset AS name, arg_max(description, event_id) AS description
    FROM log_dataset_versions WHERE description IS NOT NULL
    GROUP BY dataset
)
SELECT v.name, l.version AS latest_version, l.node AS latest_node, l.uri AS latest_uri,
       count(*) AS version_count, sum(v.times_logged) AS times_logged,
       min(v.first_logged_at) AS first_logged_at, max(v.last_logged_at) AS last_logged_at,
       any_value(d.description) AS description
FROM dataset_versions v
JOIN latest l USING (name)
LEFT JOIN described d USING (name)
GROUP BY v.name, l.version, l.node, l.uri;

-- lineage_edges: one row per distinct (src, relation, dst, role): src --relation--> dst.
--   relation: consumed (data -> run), produced (run -> artifact/model/data), derived (data -> data),
--   deployed (model -> deployment); role: how dst used src (train, validation, test, ...) or NULL;
--   transform, code_ref: how a derived version was made; recorded_at, recorded_by, event_id: the first
--   event that recorded the edge (later duplicates are dropped, with their transform/code_ref);
--   facets: JSON text of the latest event of the edge that had any (an OpenLineage job run's eventType, eventTime,
--   job {namespace, name, facets: sql, sourceCode, ...}, run {runId, facets}, the dataset's input/output facets),
--   else NULL.
--   Sources: LineageRecorded events, DatasetVersionLogged.derived_from, every logged artifact
--   (run:<run_id> --produced--> artifact:<run_id>/<path>, derived here; no event of its own), and the
--   registry's model_lineage_edges (registrations with a run, deployments).
CREATE OR REPLACE VIEW lineage_edges AS
WITH recorded AS (
    SELECT src, relation, dst, role, transform, code_ref, recorded_at, actor AS recorded_by, event_id, facets
    FROM log_lineage
    UNION ALL
    SELECT 'run:' || a.run_id, 'produced', 'artifact:' || a.run_id || '/' || a.path, NULL::VARCHAR, NULL::VARCHAR,
           NULL::VARCHAR, a.logged_at, e.actor, a.event_id, NULL::VARCHAR
    FROM log_artifacts a JOIN log_events e USING (event_id)
    UNION ALL  -- the registry's: run --produced--> model version, model version --deployed--> deployment
    SELECT src, relation, dst, role, transform, code_ref, recorded_at, recorded_by, event_id, NULL::VARCHAR
    FROM model_lineage_edges
    -- further edge sources: one `UNION ALL SELECT <the ten columns above> FROM <view>` branch each, here.
)
SELECT src, relation, dst, role, transform, code_ref, recorded_at, recorded_by, event_id,
       last_value(facets IGNORE NULLS) OVER (PARTITION BY src, relation, dst, role ORDER BY event_id
                                             ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS facets
FROM recorded
QUALIFY row_number() OVER (PARTITION BY src, relation, dst, role ORDER BY event_id) = 1;

-- lineage_nodes: one row per node the views know: every end of an edge, every run, every dataset version.
--   node, kind (run|dataset|model|deployment|artifact), upstream_edges (edges into it),
--   downstream_edges (edges out of it)
CREATE OR REPLACE VIEW lineage_nodes AS
WITH ids AS (
    SELECT src AS node FROM lineage_edges
    UNION SELECT dst FROM lineage_edges
    UNION SELECT 'run:' || run_id FROM log_run_started
    UNION SELECT node FROM dataset_versions
), ins AS (
    SELECT dst AS node, count(*) AS n FROM lineage_edges GROUP BY dst
), outs AS (
    SELECT src AS node, count(*) AS n FROM lineage_edges GROUP BY src
)
SELECT ids.node, split_part(ids.node, ':', 1) AS kind,
       coalesce(ins.n, 0) AS upstream_edges, coalesce(outs.n, 0) AS downstream_edges
FROM ids LEFT JOIN ins USING (node) LEFT JOIN outs USING (node);

-- lineage_upstream(node, depth): what `node` came from, up to `depth` edges away (a table macro).
--   SELECT * FROM lineage_upstream('deployment:credit-risk/production', 10) WHERE kind = 'dataset'
--   One row per edge reached walking edges backwards: node (the upstream end), kind, relation,
--   via (the edge's other end, one step closer to the start), role, depth (edges from the start,
--   the fewest), path (node ids from the start to node along a shortest walk; ties: the smallest).
--   Cycle-safe: a walk never revisits a node of its own path. Ordered by depth, node, relation, via.
CREATE OR REPLACE MACRO lineage_upstream(start_node, max_depth) AS TABLE
WITH RECURSIVE walk(node, relation, via, role, depth, path) AS (
    SELECT e.src, e.relation, e.dst, e.role, 1, [e.dst, e.src]
    FROM lineage_edges e
    WHERE e.dst = start_node AND e.src <> start_node AND max_depth >= 1
    UNION ALL
    SELECT e.src, e.relation, e.dst, e.role, w.depth + 1, list_append(w.path, e.src)
    FROM walk w JOIN lineage_edges e ON e.dst = w.node
    WHERE w.depth < max_depth AND NOT list_contains(w.path, e.src)
)
SELECT node, split_part(node, ':', 1) AS kind, relation, via, role, min(depth) AS depth,
       arg_min(path, (depth, path)) AS path
FROM walk
GROUP BY node, relation, via, role
ORDER BY depth, node, relation, via, role NULLS FIRST;

-- lineage_downstream(node, depth): what was made from `node`, up to `depth` edges away (a table macro).
--   SELECT * FROM lineage_downstream('dataset:applications@3f2a...', 10) WHERE kind = 'model'
--   Same columns as lineage_upstream, walking edges forwards: node is the downstream end, via the
--   edge's other end (one step closer to the start).
CREATE OR REPLACE MACRO lineage_downstream(start_node, max_depth) AS TABLE
WITH RECURSIVE walk(node, relation, via, role, depth, path) AS (
    SELECT e.dst, e.relation, e.src, e.role, 1, [e.src, e.dst]
    FROM lineage_edges e
    WHERE e.src = start_node AND e.dst <> start_node AND max_depth >= 1
    UNION ALL
    SELECT e.dst, e.relation, e.src, e.role, w.depth + 1, list_append(w.path, e.dst)
    FROM walk w JOIN lineage_edges e ON e.src = w.node
    WHERE w.depth < max_depth AND NOT list_contains(w.path, e.dst)
)
SELECT node, split_part(node, ':', 1) AS kind, relation, via, role, min(depth) AS depth,
       arg_min(path, (depth, path)) AS path
FROM walk
GROUP BY node, relation, via, role
ORDER BY depth, node, relation, via, role NULLS FIRST;
