"""The registry through the SDK (memory emitter) into a real DuckDB file: numbering, aliases, stages,
requests and decisions (computed, then recorded), tombstones, deployments, roles and policies."""

from __future__ import annotations

import pytest

from modelog import Client, MemoryEmitter, Settings
from modelog.wire.errors import ValidationError
from modelog.wire.codec import Codec
from modelog.processors.decider import decision_event_id
from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.store import VIEW_NAMES, ViewStore


class Log:
    """A one-partition log: clients publish into memory, ``pump`` applies everything new in log order.

    Decisions the store publishes are appended to the log, as the live processor does.
    """

    def __init__(self, tmp_path, batch: int = 1000) -> None:
        self.tmp_path = tmp_path
        self.store = ViewStore(tmp_path / "views.duckdb")
        self.projector = Projector()
        self.codec = Codec()
        self.log: list[bytes] = []
        self.applied = 0
        self.clients: list[tuple[Client, list]] = []
        self.batch = batch

    def client(self, principal: str) -> Client:
        c = Client(Settings.load(env={}, home=self.tmp_path, principal=principal), emitter=MemoryEmitter())
        self.clients.append((c, [0]))
        return c

    def _collect(self) -> None:
        for c, seen in self.clients:
            new = c.emitter.encoded[seen[0]:]
            seen[0] += len(new)
            self.log.extend(new)

    def publish(self, records: list[dict]) -> None:
        self.log.extend(self.codec.encode("RequestDecided", r) for r in records)

    def pump(self) -> None:
        self._collect()
        while self.applied < len(self.log):
            chunk = self.log[self.applied:self.applied + self.batch]
            recs = [RawRecord("t", 0, self.applied + i, None, b"k", v) for i, v in enumerate(chunk)]
            self.applied += len(chunk)
            self.store.apply(recs, self.projector, self.publish)

    def q(self, sql: str, *params):
        return self.store.reader().execute(sql, list(params)).fetchall()


@pytest.fixture
def log(tmp_path):
    lg = Log(tmp_path)
    yield lg
    lg.store.close()


def register(client, model="credit-risk", **kw):
    return client.registry.register_model(model, wait=False, **kw)


def test_versions_are_numbered_in_log_order_per_model(log):
    a, b = log.client("alice"), log.client("bob")
    ids = []
    for client, model in ((a, "credit-risk"), (b, "credit-risk"), (a, "fraud"), (b, "credit-risk")):
        ids.append(register(client, model).event_id)
        log.pump()
    rows = log.q("SELECT model, version, event_id FROM registered_versions ORDER BY log_offset")
    assert [(m, v) for m, v, _ in rows] == [("credit-risk", 1), ("credit-risk", 2), ("fraud", 1), ("credit-risk", 3)]
    assert [e for _, _, e in rows] == ids
    assert log.q("SELECT model, latest_version, version_count FROM models ORDER BY model") == [
        ("credit-risk", 3, 3), ("fraud", 1, 1)]


def test_alias_moves_and_keeps_history(log):
    a = log.client("alice")
    for _ in range(3):
        register(a)
    reg = a.registry
    reg.set_alias("credit-risk", "champion", 1, precheck=False)
    reg.set_alias("credit-risk", "champion", 3, precheck=False)
    reg.set_alias("credit-risk", "challenger", 2, precheck=False)
    log.pump()
    assert log.q("SELECT alias, version FROM model_aliases ORDER BY alias") == [("challenger", 2), ("champion", 3)]
    hist = log.q("SELECT alias, version, valid_to IS NULL FROM alias_history WHERE alias = 'champion' "
                 "ORDER BY valid_from")
    assert hist == [("champion", 1, False), ("champion", 3, True)]
    reg.remove_alias("credit-risk", "challenger", precheck=False)
    log.pump()
    assert log.q("SELECT alias FROM model_aliases") == [("champion",)]
    assert log.q("SELECT version, aliases FROM model_versions WHERE version = 3") == [(3, ["champion"])]


def test_requests_are_decided_then_the_recorded_decision_is_authoritative(log):
    a = log.client("alice")
    register(a)
    st = a.registry.promote("credit-risk", 1, "staging", precheck=False)
    log.pump()
    assert log.q("SELECT status FROM requests WHERE request_id = ?", st.request_id) == [("APPROVED",)]
    # the decision was published once to the log and projected back as 'recorded'
    assert log.q("SELECT source, event_id FROM log_decisions ORDER BY source") == [
        ("computed", decision_event_id(st.request_id)), ("recorded", decision_event_id(st.request_id))]
    assert log.q("SELECT event_type FROM audit_log WHERE event_type = 'RequestDecided'") == [("RequestDecided",)]
    assert log.q("SELECT stage FROM model_versions") == [("staging",)]


def test_approval_flow_pending_then_approved_by_an_approver(log):
    alice, bob, carol = log.client("alice"), log.client("bob"), log.client("carol")
    register(alice)
    alice.registry.grant("bob", "approver")
    alice.registry.set_policy([{"name": "needs-approval", "kind": "APPROVAL", "action": "PROMOTE",
                                "stage": "production", "role": "approver"}])
    st = alice.registry.promote("credit-risk", 1, "production", precheck=False)
    log.pump()
    assert log.q("SELECT status FROM requests") == [("PENDING",)]
    alice.registry.approve("credit-risk", st.request_id)  # self-approval does not count
    carol.registry.approve("credit-risk", st.request_id)  # no approver role
    log.pump()
    assert log.q("SELECT status FROM requests") == [("PENDING",)]
    bob.registry.approve("credit-risk", st.request_id, "lgtm")
    log.pump()
    assert log.q("SELECT status, reason FROM requests") == [("APPROVED", "approved (needs-approval)")]
    assert log.q("SELECT evidence['needs-approval.approved_by'] FROM decisions") == [("bob",)]
    assert log.q("SELECT version, stage FROM model_versions") == [(1, "production")]


def test_rejection_changes_nothing(log):
    alice, bob = log.client("alice"), log.client("bob")
    register(alice)
    alice.registry.grant("bob", "approver", model="credit-risk")
    alice.registry.set_policy([{"name": "needs-approval", "kind": "APPROVAL", "action": "PROMOTE",
                                "stage": "production", "role": "approver"}], model="credit-risk")
    st = alice.registry.promote("credit-risk", 1, "production", precheck=False)
    log.pump()
    bob.registry.reject("credit-risk", st.request_id, "not calibrated")
    log.pump()
    assert log.q("SELECT status, reason FROM requests") == [
        ("REJECTED", "rule 'needs-approval': rejected by bob: not calibrated")]
    assert log.q("SELECT stage FROM model_versions") == [("development",)]


def test_metric_gate_reads_the_versions_run(log):
    alice = log.client("alice")
    with alice.start_run(experiment="e", name="good") as good:
        good.log_metric("auc", 0.91)
    with alice.start_run(experiment="e", name="bad") as bad:
        bad.log_metric("auc", 0.62)
    register(alice, run_id=good.id)
    register(alice, run_id=bad.id)
    alice.registry.set_policy([{"name": "auc-gate", "kind": "METRIC_GATE", "action": "PROMOTE",
                                "stage": "production", "metric": "auc", "op": ">=", "threshold": 0.8}])
    ok = alice.registry.promote("credit-risk", 1, "production", precheck=False)
    no = alice.registry.promote("credit-risk", 2, "production", precheck=False)
    log.pump()
    status = dict(log.q("SELECT request_id, status FROM requests"))
    assert status == {ok.request_id: "APPROVED", no.request_id: "REJECTED"}
    assert log.q("SELECT reason FROM requests WHERE request_id = ?", no.request_id) == [
        ("rule 'auc-gate': auc = 0.62 is not >= 0.8",)]
    assert log.q("SELECT evidence['auc-gate.auc'] FROM decisions WHERE request_id = ?", ok.request_id) == [("0.91",)]


def test_deletion_is_a_tombstone_with_history_kept(log):
    a = log.client("alice")
    register(a)
    register(a)
    a.registry.set_alias("credit-risk", "champion", 1, precheck=False)
    a.registry.delete_version("credit-risk", 1, precheck=False)
    log.pump()
    assert log.q("SELECT version FROM model_versions") == [(2,)]
    assert log.q("SELECT count(*) FROM model_aliases") == [(0,)]
    assert log.q("SELECT version, stage FROM stage_history WHERE version = 1 ORDER BY log_offset") == [
        (1, "development"), (1, "deleted")]
    assert log.q("SELECT count(*) FROM registered_versions") == [(2,)]  # history stays
    later = a.registry.promote("credit-risk", 1, "staging", precheck=False)
    a.registry.delete_model("credit-risk", precheck=False)
    log.pump()
    assert log.q("SELECT status, reason FROM requests WHERE request_id = ?", later.request_id) == [
        ("REJECTED", "version 1 of 'credit-risk' is deleted")]
    assert log.q("SELECT count(*) FROM models") == [(0,)]
    # two registrations; four requests (alias, delete version, promote, delete model), each decided
    assert log.q("SELECT event_type, count(*) FROM audit_log WHERE entity_key = 'model:credit-risk' "
                 "GROUP BY 1 ORDER BY 1") == [("ChangeRequested", 4), ("ModelVersionRegistered", 2),
                                               ("RequestDecided", 4)]
    register(a)  # registering again after deletion continues the numbering
    log.pump()
    assert log.q("SELECT version FROM model_versions") == [(3,)]


def test_deployments_and_rollback_history(log):
    a = log.client("alice")
    register(a)
    register(a)
    reg = a.registry
    reg.record_deployment("credit-risk", 1, "prod", endpoint="https://x.invalid", precheck=False, deployed_at=1)
    reg.record_deployment("credit-risk", 2, "prod", precheck=False, deployed_at=2)
    reg.record_deployment("credit-risk", 1, "prod", rollback_of=2, precheck=False, deployed_at=3)
    log.pump()
    assert log.q("SELECT version, rollback_of FROM current_deployments") == [(1, 2)]
    assert log.q("SELECT version FROM deployments ORDER BY deployed_at") == [(1,), (2,), (1,)]
    edges = log.q("SELECT src, relation, dst FROM model_lineage_edges WHERE relation = 'deployed' ORDER BY src")
    assert set(edges) == {("model:credit-risk/1", "deployed", "deployment:credit-risk/prod"),
                          ("model:credit-risk/2", "deployed", "deployment:credit-risk/prod")}


def test_annotations_and_roles(log):
    a = log.client("alice")
    register(a, tags={"team": "risk"}, description="first")
    a.registry.annotate("credit-risk", 1, description="validated", tags={"reviewed": "yes"}, remove_tags=["team"])
    a.registry.annotate("credit-risk", description="PD model", annotations={"owner": "risk-team"})
    a.registry.grant("bob", "approver")
    a.registry.grant("carol", "approver")
    a.registry.revoke("carol", "approver")
    log.pump()
    assert log.q("SELECT description FROM model_versions") == [("validated",)]
    assert log.q("SELECT description FROM models") == [("PD model",)]
    assert log.q("SELECT version, kind, key, value FROM model_annotations ORDER BY kind, key") == [
        (None, "annotation", "owner", "risk-team"), (1, "tag", "reviewed", "yes")]
    assert log.q("SELECT principal, role FROM role_assignments") == [("bob", "approver")]


def test_roles_scoped_to_an_experiment_are_kept_apart_and_do_not_approve_models(log):
    a, dan = log.client("alice"), log.client("dan")
    register(a)
    a.registry.grant("dan", "approver", experiment="churn")
    a.registry.grant("dan", "writer", experiment="churn")
    a.registry.grant("dan", "writer", experiment="fraud")
    a.registry.revoke("dan", "writer", experiment="fraud")
    a.registry.set_policy([{"name": "needs-approval", "kind": "APPROVAL", "action": "PROMOTE",
                            "stage": "production", "role": "approver"}])
    st = a.registry.promote("credit-risk", 1, "production", precheck=False)
    log.pump()
    assert log.q("SELECT role, model, experiment FROM role_assignments ORDER BY role") == [
        ("approver", None, "churn"), ("writer", None, "churn")]
    dan.registry.approve("credit-risk", st.request_id)  # an approver of an experiment, not of this model
    log.pump()
    assert log.q("SELECT status FROM requests") == [("PENDING",)]
    with pytest.raises(ValidationError, match="experiment"):
        a.registry.grant("dan", "writer", "credit-risk", experiment="churn")
    with pytest.raises(ValidationError, match="role"):
        a.registry.grant("dan", "superuser")


def test_decisions_replay_identically(log, tmp_path):
    """Rebuild from the log (decisions included) gives the same views, decisions and all."""
    alice, bob = log.client("alice"), log.client("bob")
    register(alice)
    register(alice)
    alice.registry.grant("bob", "approver")
    alice.registry.set_policy([{"name": "needs-approval", "kind": "APPROVAL", "action": "PROMOTE",
                                "stage": "production", "role": "approver"}])
    st = alice.registry.promote("credit-risk", 2, "production", precheck=False)
    alice.registry.set_alias("credit-risk", "champion", 2, precheck=False)
    log.pump()
    bob.registry.approve("credit-risk", st.request_id)
    alice.registry.promote("credit-risk", 9, "staging", precheck=False)
    log.pump()
    replay = ViewStore(tmp_path / "replay.duckdb")
    recs = [RawRecord("t", 0, i, None, b"k", v) for i, v in enumerate(log.log)]
    for i in range(0, len(recs), 3):  # other batch boundaries; nothing published
        replay.apply(recs[i:i + 3], Projector())
    for view in VIEW_NAMES:
        cols = "*"
        a = sorted(map(repr, log.store.reader().execute(f"SELECT {cols} FROM {view}").fetchall()))
        b = sorted(map(repr, replay.reader().execute(f"SELECT {cols} FROM {view}").fetchall()))
        assert a == b, view
    replay.close()


def test_as_of_answers_with_the_state_at_that_instant(log):
    import time
    from datetime import datetime, timezone

    from modelog.consumers.query import parse_as_of
    from modelog.processors.query_server import arrow_result

    a = log.client("alice")
    register(a)
    register(a)
    a.registry.promote("credit-risk", 1, "production", precheck=False)
    log.pump()
    time.sleep(0.01)
    t1 = datetime.now(timezone.utc)
    time.sleep(0.01)
    a.registry.promote("credit-risk", 2, "production", precheck=False)
    a.registry.set_alias("credit-risk", "champion", 2, precheck=False)
    log.pump()
    query = "SELECT version, stage FROM model_versions ORDER BY version"

    def at(when):
        cur = log.store.reader()
        try:
            return [tuple(r.values()) for r in arrow_result(cur, query, parse_as_of(when)).to_pylist()]
        finally:
            cur.close()

    assert at(t1) == [(1, "production"), (2, "development")]
    assert at(t1.isoformat().replace("+00:00", "Z")) == [(1, "production"), (2, "development")]
    assert at(None) == [(1, "deprecated"), (2, "production")]
    assert at("2000-01-01T00:00") == []
    # the shadowing is private to that one query's connection
    assert log.q(query) == [(1, "deprecated"), (2, "production")]
    import pytest as _pytest

    from modelog import QueryError

    with _pytest.raises(QueryError, match="as_of"):
        parse_as_of("yesterday")


def test_lineage_answers_which_data_produced_the_model_in_production(log):
    import pandas as pd

    a = log.client("alice")
    train = pd.DataFrame({"x": [1, 2, 3], "y": [0, 1, 0]})
    with a.start_run(experiment="e", name="fit") as run:
        ds = run.log_dataset("applications", train, role="train")
    register(a, run_id=run.id)
    a.registry.record_deployment("credit-risk", 1, "prod", precheck=False)
    log.pump()
    up = log.q("SELECT node, depth FROM lineage_upstream('deployment:credit-risk/prod', 10) ORDER BY depth")
    assert up == [("model:credit-risk/1", 1), (f"run:{run.id}", 2), (ds.node, 3)]
    down = log.q(f"SELECT node FROM lineage_downstream('{ds.node}', 10) WHERE kind IN ('model', 'deployment') "
                 "ORDER BY depth")
    assert down == [("model:credit-risk/1",), ("deployment:credit-risk/prod",)]
