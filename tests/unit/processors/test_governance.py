"""The pure decider: invariants, policy rules, effects."""

import math

import pytest

from modelog.processors.governance import Approval, Effect, Request, Rule, State, decide

APPROVAL = Rule("needs-approval", "APPROVAL", "PROMOTE", stage="production", role="approver")
GATE = Rule("auc-gate", "METRIC_GATE", "PROMOTE", stage="production", metric="auc", op=">=", threshold=0.8)


def req(action="PROMOTE", version=1, stage="production", alias=None, by="alice"):
    return Request("r1", "m", action, version, stage, alias, by)


def state(**kw):
    s = State(versions={1: "development", 2: "staging"}, runs={1: "run1", 2: None})
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_promotion_without_rules_is_approved_with_its_effect():
    d = decide(req(), state())
    assert d.outcome == "APPROVED" and d.effects == (Effect("STAGE", 1, "production"),)


def test_promotion_to_production_supersedes_the_previous_production_version():
    d = decide(req(version=2), state(versions={1: "production", 2: "staging"}))
    assert d.effects == (Effect("STAGE", 1, "deprecated"), Effect("STAGE", 2, "production"))


@pytest.mark.parametrize("request_, versions, aliases, words", [
    (req(version=9), {1: "development"}, {}, "has no version 9"),
    (req(version=1), {1: "deleted", 2: "staging"}, {}, "version 1 of 'm' is deleted"),
    (req(version=1), {1: "archived"}, {}, "archived versions cannot be promoted"),
    (req(version=1, stage="production"), {1: "production"}, {}, "already in production"),
    (req(stage="retired"), {1: "development"}, {}, "stage must be one of"),
    (req("SET_ALIAS", version=1, stage=None, alias="champion"), {1: "archived"}, {}, "archived"),
    (req("SET_ALIAS", version=1, stage=None, alias="champion"), {1: "staging"}, {"champion": 1}, "already points"),
    (req("REMOVE_ALIAS", version=None, stage=None, alias="champion"), {1: "staging"}, {}, "is not set"),
    (req("DEPRECATE", stage=None), {1: "deprecated"}, {}, "already deprecated"),
    (req("ARCHIVE", stage=None), {1: "archived", 2: "staging"}, {}, "already archived"),
    (req("DELETE_MODEL", version=None, stage=None), {}, {}, "has no versions"),
    (req("DELETE_MODEL", version=None, stage=None), {1: "deleted"}, {}, "(all deleted)"),
    (req("UNKNOWN", stage=None), {1: "staging"}, {}, "unknown action"),
])
def test_invariants_reject_with_a_reason(request_, versions, aliases, words):
    d = decide(request_, state(versions=versions, aliases=aliases))
    assert d.outcome == "REJECTED" and words in d.reason and d.effects == ()


def test_approval_rule_waits_then_approves_on_a_valid_approver():
    s = state(rules=[APPROVAL])
    assert decide(req(), s) is None  # pending
    s.approvals = [Approval("alice", "APPROVE", frozenset({"approver"}))]  # the requester: does not count
    assert decide(req(), s) is None
    s.approvals.append(Approval("carol", "APPROVE", frozenset()))  # no role: does not count
    assert decide(req(), s) is None
    s.approvals.append(Approval("bob", "APPROVE", frozenset({"approver"})))
    d = decide(req(), s)
    assert d.outcome == "APPROVED" and ("needs-approval.approved_by", "bob") in d.evidence


def test_a_valid_rejection_rejects():
    s = state(rules=[APPROVAL], approvals=[Approval("bob", "REJECT", frozenset({"approver"}), "too risky")])
    d = decide(req(), s)
    assert d.outcome == "REJECTED" and "rejected by bob: too risky" in d.reason


def test_rules_apply_only_to_their_action_and_stage():
    s = state(rules=[APPROVAL, GATE])
    d = decide(req(stage="staging"), s)
    assert d.outcome == "APPROVED" and d.rules == ("invariants",)


@pytest.mark.parametrize("value, outcome", [(0.85, "APPROVED"), (0.8, "APPROVED"), (0.79, "REJECTED"),
                                            (math.nan, "REJECTED")])
def test_metric_gate(value, outcome):
    d = decide(req(), state(rules=[GATE], metrics={("run1", "auc"): value}))
    assert d.outcome == outcome
    if outcome == "REJECTED":
        assert "auc" in d.reason and "is not >= 0.8" in d.reason


def test_metric_gate_without_the_metric_or_the_run_rejects():
    assert "has no metric 'auc'" in decide(req(), state(rules=[GATE])).reason
    assert "has no run" in decide(req(version=2), state(rules=[GATE])).reason


def test_gate_failure_rejects_before_waiting_for_approval():
    d = decide(req(), state(rules=[APPROVAL, GATE], metrics={("run1", "auc"): 0.5}))
    assert d is not None and d.outcome == "REJECTED"


def test_deletion_and_archival_remove_aliases():
    s = state(aliases={"champion": 1, "staging": 2})
    d = decide(req("DELETE_VERSION", stage=None), s)
    assert d.effects == (Effect("ALIAS", None, None, "champion"), Effect("DELETED", 1))
    d = decide(req("DELETE_MODEL", version=None, stage=None), s)
    assert [e.kind for e in d.effects] == ["ALIAS", "DELETED", "ALIAS", "DELETED"]
    d = decide(req("ARCHIVE", version=2, stage=None), s)
    assert d.effects == (Effect("ALIAS", None, None, "staging"), Effect("STAGE", 2, "archived"))


def test_approvals_n_needs_n_distinct_approvers_never_the_requester_even_an_admin():
    two = Rule("two-approvers", "APPROVAL", "PROMOTE", stage="production", role="approver", approvals=2)
    s = state(rules=[two])
    roles = frozenset({"approver", "admin"})
    s.approvals = [Approval("alice", "APPROVE", roles)]  # the requester, an admin: does not count
    assert decide(req(by="alice"), s) is None
    s.approvals.append(Approval("bob", "APPROVE", roles))
    s.approvals.append(Approval("bob", "APPROVE", roles))  # bob twice is one approver
    assert decide(req(by="alice"), s) is None
    s.approvals.append(Approval("carol", "APPROVE", frozenset({"approver"})))
    d = decide(req(by="alice"), s)
    assert d.outcome == "APPROVED" and ("two-approvers.approved_by", "bob, carol") in d.evidence


def test_one_approval_is_the_default_of_an_approval_rule():
    s = state(rules=[APPROVAL], approvals=[Approval("bob", "APPROVE", frozenset({"approver"}))])
    assert APPROVAL.approvals is None and decide(req(), s).outcome == "APPROVED"
