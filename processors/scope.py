"""Read scoping: which experiments and models a principal may read, and its views showing only those.

Rules (docs/security.md, "Roles and read scoping"; decision 0022):

- Before ``modelog init`` (no bootstrap key in ``signing_keys``) the log is not governed: everyone reads
  everything, as a single-user local install always has.
- Once governed, a principal reads everything if it is an admin (the bootstrap key's principal, or a global
  ``admin`` grant) or holds any role globally (a grant with neither model nor experiment). Otherwise it reads
  the experiments on which it holds a role (their runs and everything logged to them) and the models on which
  it holds a role (their versions, requests, decisions, deployments, monitoring and alerts). Nothing is
  inherited: a model registered from a run of a readable experiment is readable only with a role on the model.
- Lineage: an edge is readable when both its ends are; a run, artifact, model or deployment node as above, a
  dataset version when an edge links it to a readable run, artifact, model or deployment.
- Audit rows (``log_events``): an event is readable when the fact it recorded is (its row in a readable table).
- Grants and tokens: a scoped principal sees its own. Signing keys and the signature policy (public keys,
  one switch) are readable by all. Dead letters (raw records of anyone) by none.

:func:`scope_of` is the pure rule (``modelog.wire.roles``, shared with the HTTP server); :func:`read_scope` reads its inputs off a connection; :func:`shadow_sql`
writes the statements that make a connection of its own see only the scope (every base table shadowed by a
filtered TEMP view, every view re-created over those, as ``as_of`` does).
"""

from __future__ import annotations

from modelog.wire.roles import Scope, scope_of

__all__ = ["Scope", "scope_of", "read_scope", "governance_version", "GOVERNANCE_TABLES", "FILTERS", "EVENTS_FILTER", "CURRENT_FILTER",
           "prelude_sql", "event_keys_sql"]


# -- reading the inputs ---------------------------------------------------------------------------------------

GOVERNANCE_TABLES = frozenset({"log_keys", "log_access", "log_key_revocations"})  # what governance_version counts


def governance_version(con) -> tuple[bool, int]:
    """(governed, grants version): a bootstrap key exists; the number of grant, key and key revocation records
    (append-only, so any change of grants or keys changes it). Read off the base tables of ``main``."""
    db = con.execute("SELECT current_database()").fetchall()[0][0]
    governed, version = con.execute(
        f'SELECT (SELECT count(*) FROM "{db}".main.log_keys WHERE bootstrap) > 0, '
        f'(SELECT count(*) FROM "{db}".main.log_access) + (SELECT count(*) FROM "{db}".main.log_keys) '
        f'+ (SELECT count(*) FROM "{db}".main.log_key_revocations)').fetchall()[0]
    return bool(governed), int(version)


def read_scope(con, principal: str) -> Scope:
    """``principal``'s scope, from the views of ``con`` (persistent ones: never a caller's shadows)."""
    db = con.execute("SELECT current_database()").fetchall()[0][0]
    governed, _ = governance_version(con)
    if not governed:
        return Scope(principal, everything=True)
    rel = con.execute(f'SELECT principal, role, model, experiment FROM "{db}".main.role_assignments '
                      "WHERE principal = ?", [principal])
    names = [d[0] for d in rel.description]
    rows = [dict(zip(names, r)) for r in rel.fetchall()]
    admins = [r[0] for r in con.execute(f'SELECT principal FROM "{db}".main.signing_keys '
                                        "WHERE bootstrap AND status = 'active'").fetchall()]
    return scope_of(principal, rows, governed, admins)


# -- the scoped views -----------------------------------------------------------------------------------------

_RUNS = "(SELECT run_id FROM _scope_runs)"
_EXPS = "(SELECT experiment FROM _scope_experiments)"
_MODELS = "(SELECT model FROM _scope_models)"

# base table -> the rows a scoped principal may read (a WHERE over the table's own columns); log_events is
# derived after all of them (its events are those of readable rows), tables absent here are not readable
FILTERS: dict[str, str] = {
    "log_experiments": f"experiment IN {_EXPS}",
    "log_run_started": f"experiment IN {_EXPS}",
    **{t: f"run_id IN {_RUNS}" for t in ("log_params", "log_metrics", "log_metric_summaries", "log_tags",
                                         "log_artifacts", "log_run_ended")},
    **{t: f"model IN {_MODELS}" for t in (
        "log_model_versions", "log_model_annotations", "log_requests", "log_approvals", "log_decisions",
        "log_decision_effects", "log_deployments", "log_reference_columns", "log_predictions",
        "log_prediction_batches", "log_labels", "log_monitor_config", "log_drift_windows", "log_drift_columns",
        "log_alerts")},
    "log_policies": f"scope = '*' OR scope IN {_MODELS}",
    "log_policy_rules": f"scope = '*' OR scope IN {_MODELS}",
    "log_access": "principal IN (SELECT principal FROM _scope_who)",
    "log_tokens": "principal IN (SELECT principal FROM _scope_who)",
    "log_token_revocations": "token_id IN (SELECT token_id FROM log_tokens)",
    "log_keys": "true",
    "log_key_revocations": "true",
    "log_signature_policy": "true",
    "log_lineage": "_scope_node(src) AND _scope_node(dst)",
    "log_dataset_versions": "'dataset:' || dataset || '@' || version IN (SELECT node FROM _scope_datasets)",
    "log_dead_letters": "false",
    # privacy (decision 0018): which keys are sensitive is policy, public like the global rules; which rows a
    # subject's key sealed follows the run; who was erased names people: admins only
    "log_sensitive_fields": "true",
    "log_sealed": f"run_id IN {_RUNS}",
    "log_erasures": "false",
}


# the current-state tables (cur_runs, cur_params, cur_tags, cur_latest_metrics: one row per run or run and key)
CURRENT_FILTER = f"run_id IN {_RUNS}"


def prelude_sql(db: str) -> list[str]:
    """The scope's helpers over the base tables of ``db``: readable runs, node and dataset readability.
    Needs the temp tables ``_scope_experiments(experiment)``, ``_scope_models(model)`` and
    ``_scope_who(principal)``."""
    base = f'"{db}".main'
    node0 = ("CASE split_part(n, ':', 1) "
             f"WHEN 'run' THEN substr(n, 5) IN {_RUNS} "
             f"WHEN 'artifact' THEN split_part(substr(n, 10), '/', 1) IN {_RUNS} "
             f"WHEN 'model' THEN {_under('model:')} "
             f"WHEN 'deployment' THEN {_under('deployment:')} "
             "ELSE false END")
    return [
        f"CREATE OR REPLACE TEMP VIEW _scope_runs AS SELECT DISTINCT run_id FROM {base}.log_run_started "
        f"WHERE experiment IN {_EXPS}",
        f"CREATE OR REPLACE TEMP MACRO _scope_node0(n) AS coalesce({node0}, false)",
        # the lineage ends _scope_node0 holds readable, by one semi-join per kind (cheap to bind, unlike the macro)
        "CREATE OR REPLACE TEMP VIEW _scope_nodes0 AS "
        f"WITH nodes AS MATERIALIZED (SELECT src AS k FROM {base}.log_lineage UNION SELECT dst FROM {base}.log_lineage) "
        + readable_nodes_sql("nodes"),
        "CREATE OR REPLACE TEMP VIEW _scope_datasets AS "
        f"SELECT dst AS node FROM {base}.log_lineage WHERE starts_with(dst, 'dataset:') AND src IN (SELECT k FROM _scope_nodes0) "
        f"UNION SELECT src FROM {base}.log_lineage WHERE starts_with(src, 'dataset:') AND dst IN (SELECT k FROM _scope_nodes0)",
        "CREATE OR REPLACE TEMP MACRO _scope_node(n) AS "
        "_scope_node0(n) OR (starts_with(n, 'dataset:') AND n IN (SELECT node FROM _scope_datasets))",
    ]


def readable_nodes_sql(keys: str) -> str:
    """The keys of relation ``keys`` (column ``k``) that ``_scope_node0`` holds readable: run, artifact, model and
    deployment node ids (and entity keys of that form), one semi-join per kind."""
    rest = "substr(k, strpos(k, ':') + 1)"
    under = (f"({rest} = m.model OR regexp_extract({rest}, '^(.*)/[^/]*$', 1) = m.model "
             f"OR split_part({rest}, '/', 1) = m.model)")
    return (f"SELECT k FROM {keys} SEMI JOIN _scope_runs r ON k = 'run:' || r.run_id "
            f"UNION SELECT k FROM {keys} SEMI JOIN _scope_runs r ON starts_with(k, 'artifact:') "
            "AND split_part(substr(k, 10), '/', 1) = r.run_id "
            f"UNION SELECT k FROM {keys} SEMI JOIN _scope_models m ON split_part(k, ':', 1) IN ('model', 'deployment') "
            f"AND {under}")


def _under(prefix: str, n: str = "n") -> str:
    """``n`` is ``<prefix><a readable model>`` or lies under it (``<prefix><model>/<version, environment or
    deployment>``). Model names may hold '/', so each reading of ``n`` is tried: all of it, up to its last '/',
    up to its first '/' (uncorrelated IN lists: evaluated once, not per row)."""
    rest = f"substr({n}, {len(prefix) + 1})"
    return (f"({rest} IN {_MODELS} OR regexp_extract({rest}, '^(.*)/[^/]*$', 1) IN {_MODELS} "
            f"OR split_part({rest}, '/', 1) IN {_MODELS})")


# log_events' rows a scoped principal may read: the events of entities it may read, by the event's entity key
# (runs: the run id or run:<id>; experiments: the name; model:<name>[/<version>], monitor:<model>[/<deployment>],
# deployment:<model>/<environment>, policy:<model>|*; a dataset version's or edge's node; its own grants and
# tokens; every key event, as keys are public). Anything else (a dataset by name, OpenLineage jobs): none.
#
# Every rule but the first three depends on the entity key alone, and only keys with one of ``KEYED`` prefixes
# can pass them: those are judged once per distinct key (``_scope_event_keys``, built by ``event_keys_sql``: one
# semi-join per rule), and the events are joined with the keys that passed. Written as one OR of every rule per
# event row (nested macros), binding the statement was most of the audit log's cost (bench/read_scope.py).
KEYED = ("access", "token", "policy", "monitor", "run", "artifact", "model", "deployment", "dataset")

EVENTS_FILTER = (
    f"(entity_type = 'run' AND entity_key IN {_RUNS}) "
    f"OR (entity_type = 'experiment' AND entity_key IN {_EXPS}) "
    "OR entity_type = 'key' "
    "OR entity_key IN (SELECT k FROM _scope_event_keys)"
)


def event_keys_sql(db: str) -> str:
    """The TEMP view ``_scope_event_keys``: the distinct entity keys of ``db``'s events that pass the key rules
    (after the shadows of ``log_tokens`` exist: a token's events follow the principal's own tokens).

    One semi-join per rule over the distinct keys, rather than an OR of every rule per key: the same keys
    pass, and the statement binds each helper set once (binding the nested macros was most of the cost)."""
    keyed = ", ".join(f"'{p}'" for p in KEYED)
    rest = "substr(k, strpos(k, ':') + 1)"
    under = (f"({rest} = m.model OR regexp_extract({rest}, '^(.*)/[^/]*$', 1) = m.model "
             f"OR split_part({rest}, '/', 1) = m.model)")
    return (
        "CREATE OR REPLACE TEMP VIEW _scope_event_keys AS "
        f'WITH keyed AS MATERIALIZED (SELECT DISTINCT entity_key AS k FROM "{db}".main.log_events '
        f"WHERE split_part(entity_key, ':', 1) IN ({keyed})) "
        "SELECT k FROM keyed SEMI JOIN _scope_who w ON k = 'access:' || w.principal "
        "UNION SELECT k FROM keyed SEMI JOIN log_tokens t ON k = 'token:' || t.token_id "
        "UNION SELECT k FROM keyed WHERE k = 'policy:*' "
        "UNION SELECT k FROM keyed SEMI JOIN _scope_models m ON k = 'policy:' || m.model "
        f"UNION SELECT k FROM keyed SEMI JOIN _scope_models m ON starts_with(k, 'monitor:') AND {under} "
        "UNION " + readable_nodes_sql("keyed") + " "
        "UNION SELECT k FROM keyed SEMI JOIN _scope_datasets d ON k = d.node")
