"""Read scoping (decision 0022): the pure rule (scope_of), and a real DuckDB views file seen through a scope --
every view a team-b reader could use to see team-a's rows shows none of them, and qualified names that would
reach past the shadows are refused."""

from __future__ import annotations

import duckdb
import pytest

from modelog.processors.current import CURRENT, definition_sql
from modelog.processors.query_server import arrow_result, shadow_views
from modelog.processors.scope import FILTERS, Scope, governance_version, read_scope, scope_of  # noqa: F401
from modelog.processors.store import VIEW_NAMES, ViewStore
from modelog.processors.tables import TABLES
from modelog.wire.errors import QueryError


# -- the pure rule ----------------------------------------------------------------------------------------------

def grant(principal, role, model=None, experiment=None):
    return {"principal": principal, "role": role, "model": model, "experiment": experiment}


def test_not_governed_reads_everything():
    assert scope_of("bob", [], governed=False).everything


def test_governed_without_grants_reads_nothing():
    s = scope_of("bob", [grant("carol", "admin")], governed=True)
    assert not s.everything and s.experiments == frozenset() and s.models == frozenset()


def test_bootstrap_admin_and_any_global_role_read_everything():
    assert scope_of("alice", [], governed=True, bootstrap_admins=["alice"]).everything
    assert scope_of("dave", [grant("dave", "reader")], governed=True).everything
    assert scope_of("erin", [grant("erin", "admin")], governed=True).everything


def test_experiment_and_model_grants_scope_to_those():
    rows = [grant("bob", "reader", experiment="team-a"), grant("bob", "writer", experiment="team-c"),
            grant("bob", "approver", model="churn"), grant("carol", "reader", experiment="team-b"),
            grant("carol", "admin")]
    s = scope_of("bob", rows, governed=True)
    assert not s.everything
    assert s.experiments == {"team-a", "team-c"} and s.models == {"churn"}


def test_scope_key_equal_for_equal_scopes():
    a = Scope("bob", experiments=frozenset({"x", "y"}))
    b = Scope("bob", experiments=frozenset({"y", "x"}))
    assert a.key == b.key and a.key != Scope("bob", experiments=frozenset({"x"})).key
    assert Scope("a", everything=True).key == Scope("b", everything=True).key


def test_every_base_table_has_a_rule():
    """A new base table must say who may read it: without a rule it is invisible to a scoped reader (safe), but
    the omission should be deliberate -- add it to FILTERS (or to the derived log_events)."""
    assert set(TABLES) - set(FILTERS) == {"log_events"}


# -- scoped views over a real file ------------------------------------------------------------------------------

A_RUN, B_RUN = "a" * 32, "b" * 32


@pytest.fixture
def store(tmp_path):
    s = ViewStore(tmp_path / "views.duckdb")
    con = s.con
    ins = con.execute
    for i, (run, exp) in enumerate(((A_RUN, "team-a"), (B_RUN, "team-b"))):
        ins("INSERT INTO log_experiments (event_id, experiment, created_at, actor) VALUES (?, ?, now(), 'x')",
            [f"e-exp-{i}", exp])
        ins("INSERT INTO log_run_started (event_id, run_id, experiment, name, start_time, actor) "
            "VALUES (?, ?, ?, ?, now(), 'x')", [f"e-run-{i}", run, exp, f"run-{exp}"])
        ins("INSERT INTO log_params (event_id, run_id, key, value, value_type, logged_at) VALUES (?, ?, 'lr', ?, "
            "'str', now())", [f"e-par-{i}", run, exp])
        ins('INSERT INTO log_metrics (event_id, run_id, key, value, step, "timestamp") VALUES (?, ?, \'auc\', ?, 0, '
            "now())", [f"e-met-{i}", run, float(i)])
        ins('INSERT INTO log_metric_summaries (run_id, key, value, step, "timestamp", event_id, min_value, max_value, '
            "points) VALUES (?, 'auc', ?, 0, now(), ?, ?, ?, 1)", [run, float(i), f"e-met-{i}", float(i), float(i)])
        ins("INSERT INTO log_tags (event_id, run_id, key, value, set_at) VALUES (?, ?, 'team', ?, now())",
            [f"e-tag-{i}", run, exp])
        ins("INSERT INTO log_artifacts (event_id, run_id, path, uri, logged_at) VALUES (?, ?, 'model.pkl', 'u', now())",
            [f"e-art-{i}", run])
        ins("INSERT INTO log_run_ended (event_id, run_id, status, end_time, actor) VALUES (?, ?, 'FINISHED', now(), 'x')",
            [f"e-end-{i}", run])
        model = f"model-{exp}"
        ins("INSERT INTO log_model_versions (event_id, model, run_id, uri, registered_at, registered_by) "
            "VALUES (?, ?, ?, 'u', now(), 'x')", [f"e-mv-{i}", model, run])
        ins("INSERT INTO log_alerts (event_id, alert_id, model, deployment, rule, state, severity, changed_at) "
            "VALUES (?, ?, ?, 'prod', 'drift', 'RAISED', 'warning', now())", [f"e-al-{i}", f"al-{i}", model])
        ins("INSERT INTO log_dataset_versions (event_id, dataset, version, uri, logged_at, actor) "
            "VALUES (?, ?, ?, 'u', now(), 'x')", [f"e-ds-{i}", f"data-{exp}", f"{i:064d}"])
        ins("INSERT INTO log_lineage (event_id, src, relation, dst, recorded_at, actor) VALUES (?, ?, 'consumed', ?, "
            "now(), 'x')", [f"e-lin-{i}", f"dataset:data-{exp}@{i:064d}", f"run:{run}"])
        for kind, key, eid in (
                ("experiment", exp, f"e-exp-{i}"), ("run", run, f"e-run-{i}"), ("run", run, f"e-par-{i}"),
                ("run", run, f"e-met-{i}"), ("run", run, f"e-tag-{i}"), ("run", run, f"e-art-{i}"),
                ("run", run, f"e-end-{i}"), ("model", f"model:{model}", f"e-mv-{i}"),
                ("monitor", f"monitor:{model}/prod", f"e-al-{i}"), ("dataset", f"dataset:data-{exp}", f"e-ds-{i}"),
                ("run", f"run:{run}", f"e-lin-{i}")):
            ins("INSERT INTO log_events (event_id, event_type, occurred_at, actor, entity_type, entity_key) "
                "VALUES (?, 'X', now(), 'x', ?, ?)", [eid, kind, key])
    ins("INSERT INTO log_dead_letters (topic, partition, \"offset\", reason, detail, logged_at) "
        "VALUES ('t', 0, 0, 'bad', 'secret of team-a', now())")
    for c in CURRENT.values():  # the current-state tables, as the store keeps them with every batch
        ins(f"INSERT INTO {c.name} BY NAME {definition_sql(c)}")
    yield s
    s.close()


def govern(store, grants):
    """Make the log governed (a bootstrap key) with ``grants`` [(principal, role, model, experiment)]."""
    store.con.execute("INSERT INTO log_keys (event_id, key_id, principal, public_key, bootstrap, registered_at) "
                      "VALUES ('e-key', 'ed25519:0', 'alice', '\\x00'::BLOB, true, now())")
    store.con.execute("INSERT INTO log_events (event_id, event_type, occurred_at, actor, entity_type, entity_key, "
                      "logged_at) VALUES ('e-key', 'KeyRegistered', now(), 'alice', 'key', 'keys', now())")
    for i, (p, role, model, exp) in enumerate(grants):
        store.con.execute("INSERT INTO log_access (event_id, principal, role, model, experiment, granted, changed_at, "
                          "changed_by) VALUES (?, ?, ?, ?, ?, true, now(), 'alice')", [f"e-acc-{i}", p, role, model, exp])


def read(store, principal, sql, as_of=None):
    cur = store.reader()
    try:
        scope = read_scope(cur, principal)
        return arrow_result(cur, sql, as_of, None, None, scope).to_pylist()
    finally:
        cur.close()


class Reader:
    """One principal's scoped connection (shadowed once, as the endpoint keeps them), for several queries."""

    def __init__(self, store, principal) -> None:
        self.cur = store.reader()
        self.scope = read_scope(self.cur, principal)
        if not self.scope.everything:
            shadow_views(self.cur, scope=self.scope)

    def __call__(self, sql):
        return arrow_result(self.cur, sql, None, None, None, self.scope, shadowed=True).to_pylist()


def test_before_init_everyone_reads_everything(store):
    assert governance_version(store.reader())[0] is False
    assert len(read(store, "bob", "SELECT * FROM runs")) == 2


TEAM_A_ONLY = {
    "experiments": "SELECT experiment AS x FROM experiments",
    "runs": "SELECT experiment AS x FROM runs",
    "params": "SELECT value AS x FROM params",
    "tags": "SELECT value AS x FROM tags",
    "metrics": "SELECT run_id AS x FROM metrics",
    "latest_metrics": "SELECT run_id AS x FROM latest_metrics",
    "artifacts": "SELECT run_id AS x FROM artifacts",
    "run_environments": "SELECT run_id AS x FROM run_environments",
    "lineage_edges": "SELECT dst AS x FROM lineage_edges",
    "lineage_nodes": "SELECT node AS x FROM lineage_nodes",
    "dataset_versions": "SELECT name AS x FROM dataset_versions",
    "audit_log": "SELECT entity_key AS x FROM audit_log WHERE entity_type <> 'key'",
}


def test_a_team_a_reader_sees_team_a_only(store):
    govern(store, [("bob", "reader", None, "team-a"), ("carol", "reader", None, "team-b")])
    bob, alice = Reader(store, "bob"), Reader(store, "alice")
    assert not bob.scope.everything and alice.scope.everything
    for view, sql in TEAM_A_ONLY.items():
        got = [r["x"] for r in bob(sql)]
        assert got, f"{view}: bob sees nothing of team-a"
        assert all(("team-a" in str(x)) or (A_RUN in str(x)) for x in got), (view, got)
        # and the unscoped file holds team-b's rows (the filter is what hides them)
        everything = [r["x"] for r in alice(sql)]
        assert any(("team-b" in str(x)) or (B_RUN in str(x)) for x in everything), (view, everything)


def test_models_alerts_and_dead_letters_need_their_own_grant(store):
    govern(store, [("bob", "reader", None, "team-a")])
    bob = Reader(store, "bob")
    for view in ("model_versions", "registered_versions", "alerts", "dead_letters", "model_lineage_edges"):
        assert bob(f"SELECT * FROM {view}") == [], view
    assert bob("SELECT * FROM audit_log WHERE entity_type IN ('model', 'monitor')") == []
    govern_more = [("bob", "reader", "model-team-a", None)]
    for i, (p, role, model, exp) in enumerate(govern_more):
        store.con.execute("INSERT INTO log_access (event_id, principal, role, model, experiment, granted, changed_at, "
                          "changed_by) VALUES (?, ?, ?, ?, ?, true, now(), 'alice')", [f"e-m-{i}", p, role, model, exp])
    bob = Reader(store, "bob")  # the grants changed: a new scope, new shadows
    assert bob.scope.models == {"model-team-a"}
    assert [r["model"] for r in bob("SELECT model FROM model_versions")] == ["model-team-a"]
    assert [r["model"] for r in bob("SELECT model FROM alerts")] == ["model-team-a"]
    assert sorted(r["entity_key"] for r in bob("SELECT entity_key FROM audit_log WHERE entity_type "
                                               "IN ('model', 'monitor')")) == \
        ["model:model-team-a", "monitor:model-team-a/prod"]
    assert bob("SELECT * FROM dead_letters") == []


def test_a_principal_without_grants_sees_nothing_but_public_keys(store):
    govern(store, [("bob", "reader", None, "team-a")])
    mallory = Reader(store, "mallory")
    for view in sorted(set(VIEW_NAMES) - {"signing_keys", "signature_policy", "policies", "audit_log"}):
        assert mallory(f"SELECT * FROM {view}") == [], view
    assert {r["event_type"] for r in mallory("SELECT event_type FROM audit_log")} == {"KeyRegistered"}
    assert len(mallory("SELECT * FROM signing_keys")) == 1  # public keys are public


def test_own_grants_only(store):
    govern(store, [("bob", "reader", None, "team-a"), ("carol", "reader", None, "team-b")])
    assert [r["principal"] for r in read(store, "bob", "SELECT principal FROM role_assignments")] == ["bob"]


def test_as_of_and_scope_compose(store):
    govern(store, [("bob", "reader", None, "team-a")])
    got = read(store, "bob", "SELECT run_id FROM runs", as_of="2999-01-01T00:00:00")
    assert [r["run_id"] for r in got] == [A_RUN]


QUALIFIED = ["SELECT * FROM main.log_run_started", "SELECT * FROM main.runs", "SELECT * FROM views.main.log_metrics",
             "SELECT count(*) FROM (SELECT * FROM main.params)", "EXPLAIN SELECT * FROM main.runs",
             "SELECT * FROM temp.main.runs"]


def test_qualified_names_are_refused_for_a_scoped_reader(store):
    govern(store, [("bob", "reader", None, "team-a")])
    bob = Scope("bob", experiments=frozenset({"team-a"}))
    for sql in QUALIFIED:
        with pytest.raises(QueryError, match="qualified names are not allowed"):
            arrow_result(store.reader(), sql, scope=bob)
    read(store, "alice", "SELECT * FROM main.runs")  # the admin is not scoped: no shadows to escape


def test_paged_equals_unpaged(store):
    govern(store, [("bob", "reader", None, "team-a")])
    bob = Reader(store, "bob")
    whole = bob("SELECT run_id FROM metrics ORDER BY run_id")
    paged = bob("SELECT run_id FROM metrics ORDER BY run_id LIMIT 1 OFFSET 0") + \
        bob("SELECT run_id FROM metrics ORDER BY run_id LIMIT 1 OFFSET 1")
    assert paged == whole == [{"run_id": A_RUN}]


def test_python_replacement_scans_are_off_on_a_reader(store):
    """A name in FROM must not resolve to a DataFrame of the answering process (attack 18)."""
    cur = store.reader()
    arrow_result(cur, "SELECT 1")
    assert cur.execute("SELECT current_setting('python_enable_replacements')").fetchall() == [(False,)]


def test_the_endpoint_never_reads_a_python_object_of_its_process(store):
    """The endpoint's cursors skip the per-statement SET (the store set it GLOBAL): a DataFrame in scope here
    is still out of reach, on a fresh cursor and on the writer's own connection."""
    import pandas as pd

    from modelog.processors.query_server import QueryServer

    secrets = pd.DataFrame({"secret": ["s3cr3t"]})  # noqa: F841 -- what a replacement scan would find
    server = QueryServer(store).start()
    try:
        with pytest.raises(duckdb.CatalogException, match="secrets") as info:
            server.answer(b"SELECT * FROM secrets", {}, None, None)
        assert "s3cr3t" not in str(info.value)
    finally:
        server.stop()
    for con in (store.reader(), store.con):
        assert con.execute("SELECT current_setting('python_enable_replacements')").fetchall() == [(False,)]


def test_the_server_reading_the_file_itself_still_scopes_each_caller(store, tmp_path):
    """No processor running: the server opens the views file read-only in its own process and applies the
    caller's scope there (consumers.query.query_arrow(on_behalf_of=...))."""
    from modelog import Settings
    from modelog.consumers.query import query_arrow

    govern(store, [("bob", "reader", None, "team-a")])
    store.close()
    settings = Settings.load(env={}, home=tmp_path)  # its views file: home/views.duckdb, the fixture's
    rows = query_arrow("SELECT experiment FROM runs ORDER BY experiment", settings, on_behalf_of="bob").to_pylist()
    assert rows == [{"experiment": "team-a"}]
    rows = query_arrow("SELECT experiment FROM runs ORDER BY experiment", settings, on_behalf_of="alice").to_pylist()
    assert rows == [{"experiment": "team-a"}, {"experiment": "team-b"}]
