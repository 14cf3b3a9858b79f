"""Every write is authorized by the grants as of its log time, once the log is governed (decision 0017).

(tests/security/test_write_authorization.py drives the same rules on the real broker.)
"""

import pytest

from factories import registry_records, sample_records
from test_trust import ADMIN, BOB, grant, raw, reasons, record, registered, run
from modelog.wire.signing import Signer
from modelog.processors.permissions import ACTIONS, PERMITS, SYSTEM, Grant, Scope, allowed
from modelog.processors.trust import GOVERNED, Trust
from modelog.wire.schemas import current_schemas

CAROL = Signer.generate()


def governed(*grants) -> Trust:
    """alice the bootstrap admin (1000 ms); bob's and carol's keys (2000 ms); then ``grants`` (at 2500 ms)."""
    p, trust = run([raw("KeyRegistered", registered("alice", ADMIN, "alice", bootstrap=True), ADMIN, 1000),
                    raw("KeyRegistered", registered("alice", BOB, "bob"), ADMIN, 2000),
                    raw("KeyRegistered", registered("alice", CAROL, "carol"), ADMIN, 2000),
                    *(raw("AccessChanged", g, ADMIN, 2500) for g in grants)])
    assert not p.dead, p.dead
    return trust


def _like(sample: dict, actor: str, **fields) -> dict:
    """A copy of a sample record with a fresh event id, ``actor`` and ``fields`` changed."""
    event_type = sample["envelope"]["event_type"]
    rec = record(event_type, actor, **{k: v for k, v in sample.items() if k != "envelope"})
    rec.update(fields)
    return rec


def started(actor, run_id, experiment):
    return _like(sample_records()["RunStarted"], actor, run_id=run_id, experiment=experiment)


def params(actor, run_id):
    return _like(sample_records()["ParamsLogged"], actor, run_id=run_id)


def test_every_user_event_type_has_a_write_rule():
    """A new event type must say who may write it (or be a processor's own, or governed): fails otherwise."""
    unruled = set(current_schemas()) - set(ACTIONS) - SYSTEM - GOVERNED
    assert not unruled, f"event types without an authorization rule in processors/permissions.py: {unruled}"


def test_a_writer_on_an_experiment_writes_there_and_nowhere_else():
    trust = governed(grant("alice", "bob", "writer", 2_000_000, experiment="team-a"))
    p, _ = run([raw("RunStarted", started("bob", "r1", "team-a"), BOB, 3000),
                raw("ParamsLogged", params("bob", "r1"), BOB, 3001),
                raw("RunStarted", started("bob", "r2", "team-b"), BOB, 3002),
                raw("ParamsLogged", params("bob", "r2"), BOB, 3003)], trust)
    assert [e[1] for e in p.events] == ["RunStarted", "ParamsLogged"]
    assert reasons(p) == ["not_authorized", "not_authorized"]
    assert "needs admin or maintainer or writer on experiment 'team-b'" in p.dead[0].detail
    assert "holds: writer on experiment 'team-a'" in p.dead[0].detail


def test_writes_into_someone_elses_run_follow_the_runs_experiment():
    trust = governed(grant("alice", "bob", "writer", 2_000_000, experiment="team-a"),
                     grant("alice", "carol", "writer", 2_000_000, experiment="team-b"))
    p, _ = run([raw("RunStarted", started("carol", "rb", "team-b"), CAROL, 3000),
                raw("ParamsLogged", params("bob", "rb"), BOB, 3001),  # bob writing into team-b's run
                raw("ParamsLogged", params("bob", "ghost"), BOB, 3002)], trust)  # a run never started
    assert reasons(p) == ["not_authorized", "not_authorized"] and [e[1] for e in p.events] == ["RunStarted"]
    assert "needs admin or maintainer or writer everywhere: run ghost was not started" in p.dead[1].detail


def test_a_run_started_in_an_earlier_batch_is_found_through_the_lookup():
    trust = governed(grant("alice", "bob", "writer", 2_000_000, experiment="team-a"))
    trust.run_lookup = {"old": "team-a", "theirs": "team-b"}.get
    p, _ = run([raw("ParamsLogged", params("bob", "old"), BOB, 3000),
                raw("ParamsLogged", params("bob", "theirs"), BOB, 3001)], trust)
    assert len(p.events) == 1 and reasons(p) == ["not_authorized"]


def test_grants_count_as_of_the_events_log_time():
    trust = governed(grant("alice", "bob", "writer", 2_000_000, experiment="team-a"),
                     grant("alice", "bob", "writer", 4_000_000, experiment="team-a", granted=False))
    p, _ = run([raw("RunStarted", started("bob", "r1", "team-a"), BOB, 3000),   # held then
                raw("RunStarted", started("bob", "r2", "team-a"), BOB, 5000)], trust)  # revoked by then
    assert [e[1] for e in p.events] == ["RunStarted"] and reasons(p) == ["not_authorized"]


def test_registry_changes_need_a_maintainer_on_the_model_and_a_reader_writes_nothing():
    trust = governed(grant("alice", "bob", "writer", 2_000_000, model="credit-risk"),
                     grant("alice", "carol", "reader", 2_000_000))
    annotate = _like(registry_records()["ModelAnnotated"], "bob", model="credit-risk")
    carol_creates = record("ExperimentCreated", "carol", experiment="e", description=None)
    p, _ = run([raw("ModelAnnotated", annotate, BOB, 3000), raw("ExperimentCreated", carol_creates, CAROL, 3001)],
               trust)
    assert reasons(p) == ["not_authorized", "not_authorized"]
    assert "needs admin or maintainer on model 'credit-risk'" in p.dead[0].detail


def test_admins_write_everywhere_and_nothing_is_checked_before_the_log_is_governed():
    trust = governed()
    p, _ = run([raw("RunStarted", started("alice", "r1", "any"), ADMIN, 3000)], trust)
    assert not p.dead
    p, _ = run([raw("RunStarted", started("bob", "r2", "any"), None, 3000)])  # a fresh install: open
    assert not p.dead


@pytest.mark.parametrize("held, action, scope, ok", [
    ([Grant("writer")], "write", Scope(experiment="x"), True),
    ([Grant("writer", experiment="x")], "write", Scope(experiment="y"), False),
    ([Grant("writer", model="x")], "write", Scope(experiment="x"), False),  # a model is not an experiment
    ([Grant("writer", experiment="x")], "write", Scope(), True),  # datasets: a writer anywhere
    ([Grant("reader")], "write", Scope(), False),
    ([Grant("approver", model="m")], "approve", Scope(model="m"), True),
    ([Grant("maintainer", model="m")], "approve", Scope(model="m"), False),
    ([Grant("reader", model="m")], "reach", Scope(model="m"), True),
])
def test_allowed(held, action, scope, ok):
    assert allowed(held, action, scope) is ok


def test_roles_are_the_tokens_roles():
    from modelog.wire.tokens import ROLES
    assert set(PERMITS) == set(ROLES)
