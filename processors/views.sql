-- modelog views: current state derived from the base tables (log_*), which hold facts only.
-- Every view is a pure function of the log: `modelog rebuild` reproduces it row for row.
-- runs, params, tags and latest_metrics read the current-state tables (cur_*, processors/current.py),
-- which the store updates with every batch; where only the facts exist (as_of, the lake) the cur_*
-- names are views computing the same rows from the base tables.
-- All times are UTC. Keep docs/views.md in step with this file.

-- experiments: one row per experiment name.
--   experiment, description (first non-null), created_at (first declaration), created_by,
--   run_count, last_run_at
CREATE OR REPLACE VIEW experiments AS
SELECT e.experiment,
       arg_min(e.description, e.event_id) FILTER (WHERE e.description IS NOT NULL) AS description,
       min(e.created_at) AS created_at,
       arg_min(e.actor, e.event_id) AS created_by,
       (SELECT count(DISTINCT r.run_id) FROM log_run_started r WHERE r.experiment = e.experiment) AS run_count,
       (SELECT max(r.start_time) FROM log_run_started r WHERE r.experiment = e.experiment) AS last_run_at
FROM log_experiments e
GROUP BY e.experiment;

-- runs: one row per run.
--   run_id, experiment, name, status (RUNNING until a RunEnded arrives, then FINISHED|FAILED|KILLED),
--   start_time, end_time, duration_s, actor (who started it), error (FAILED/KILLED reason),
--   environment summary: python_version, platform, hostname, cpu_count, memory_bytes, gpus,
--   git_commit, git_branch, git_dirty, command (argv), package_count
CREATE OR REPLACE VIEW runs AS
SELECT run_id, experiment, name,
       coalesce(status, 'RUNNING') AS status,
       start_time, end_time,
       epoch_us(end_time) / 1e6 - epoch_us(start_time) / 1e6 AS duration_s,
       actor, error,
       python_version, platform, hostname, cpu_count, memory_bytes, gpus,
       git_commit, git_branch, git_dirty, command, package_count
FROM cur_runs WHERE started_event_id IS NOT NULL;

-- run_environments: the full environment of each run, packages included (MAP name -> version).
CREATE OR REPLACE VIEW run_environments AS
SELECT run_id, python_version, python_implementation, platform, hostname, cpu_count, memory_bytes, gpus,
       command, working_dir, git_commit, git_branch, git_dirty, git_remote, packages
FROM log_run_started QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY event_id) = 1;

-- params: one row per (run, key): the value as text, value_type (str|int|float|bool|none), logged_at.
CREATE OR REPLACE VIEW params AS
SELECT run_id, key, value, value_type, logged_at FROM cur_params;

-- metrics: the full history, one row per logged point: run_id, key, value (NaN/inf kept), step, timestamp.
CREATE OR REPLACE VIEW metrics AS
SELECT run_id, key, value, step, "timestamp" FROM log_metrics;

-- latest_metrics: one row per (run, key): the point with the highest step (latest timestamp on ties),
--   plus min/max (NaN ignored) and the number of points.
CREATE OR REPLACE VIEW latest_metrics AS
SELECT run_id, key, value, step, "timestamp", min_value, max_value, points FROM cur_latest_metrics;

-- tags: one row per (run, key): the latest value (by event time, then event id), set_at.
CREATE OR REPLACE VIEW tags AS
SELECT run_id, key, value, set_at FROM cur_tags;

-- artifacts: one row per (run, path), the latest record: uri (where it was logged from), sha256, size_bytes,
--   media_type, logged_at, content_address (the object in the artifact store, <store>/sha256/<hex>; NULL when
--   only a reference was recorded: store=False, or logged before the artifact store).
CREATE OR REPLACE VIEW artifacts AS
SELECT run_id, path, uri, sha256, size_bytes, media_type, logged_at, content_address
FROM log_artifacts QUALIFY row_number() OVER (PARTITION BY run_id, path ORDER BY event_id DESC) = 1;

-- audit_log: every event ever applied, in log order per partition: who did what, when, where it is in the log.
--   verified: the record carried a signature that verified with key_id, a key registered to the actor (or a
--   delegate key, the HTTP server's, vouching for the actor) and not revoked at the record's log time; false:
--   unsigned, the actor is what the client claimed (decision 0015).
CREATE OR REPLACE VIEW audit_log AS
SELECT occurred_at, event_type, actor, actor_kind, entity_type, entity_key, event_id,
       topic, "partition", "offset", logged_at, source_host, source_pid, source_program, sdk_version, writer_schema,
       coalesce(verified, false) AS verified, key_id
FROM log_events;

-- dead_letters: records the projector could not apply: where they are, why (reason code + detail).
CREATE OR REPLACE VIEW dead_letters AS
SELECT topic, "partition", "offset", reason, detail, logged_at, octet_length(value) AS value_bytes
FROM log_dead_letters;
