"""The registry against the real broker, a real processor and real DuckDB files: concurrent
numbering, governed changes decided by the processor, CLI gating, time travel, rebuild."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import duckdb
import pytest

from conftest import run_cli
from waiting import wait_until
from modelog import ValidationError
from modelog.consumers.query import sql_arrow
from modelog.processors.store import VIEW_NAMES

pytestmark = pytest.mark.broker

REGISTER_SCRIPT = """
import json, sys
from modelog import Client
c = Client()
out = [c.registry.register_model("shared", tags={"writer": sys.argv[1]}, wait=True, timeout=60).version
       for _ in range(int(sys.argv[2]))]
c.close()
print(json.dumps(out))
"""


def q(settings, query):
    return [tuple(r.values()) for r in sql_arrow(query, settings).to_pylist()]


def wait_recorded(settings, timeout=30.0):
    """Until every decision the processor made is back from the log (source = recorded)."""
    deadline = time.monotonic() + timeout
    while q(settings, "SELECT count(*) FROM decisions WHERE source = 'computed'") != [(0,)]:
        assert time.monotonic() < deadline, "decisions did not come back from the log"
        time.sleep(0.05)


def test_concurrent_registrations_from_several_processes_get_distinct_numbers(env, settings, processor):
    full = {k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")} | env
    procs = [subprocess.Popen([sys.executable, "-c", REGISTER_SCRIPT, f"w{i}", "5"], env=full,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    numbers = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        numbers.extend(json.loads(out))
    assert sorted(numbers) == list(range(1, 21))  # each process got its own numbers back
    rows = q(settings, "SELECT version, tags['writer'] FROM registered_versions WHERE model = 'shared' ORDER BY 1")
    assert [v for v, _ in rows] == list(range(1, 21))
    assert {w for _, w in rows} == {"w0", "w1", "w2", "w3"}


def test_governed_promotion_through_the_cli(env, settings, processor, client):
    with client.start_run(experiment="gov", name="good") as good:
        good.log_metric("auc", 0.93)
    with client.start_run(experiment="gov", name="weak") as weak:
        weak.log_metric("auc", 0.61)
    v1 = good.register_model("credit-risk", semver="1.0.0")
    v2 = weak.register_model("credit-risk", semver="1.1.0")
    assert (v1.version, v2.version) == (1, 2)

    run_cli(env, "policy", "set", "--require-approval", "PROMOTE:production=approver",
            "--gate", "PROMOTE:production=auc >= 0.8")
    run_cli(env, "access", "grant", "bob", "approver")

    # gate fails: rejected with the reason, exit 1, nothing changes
    out = run_cli(env, "model", "promote", "credit-risk", "2", "--to", "production", "--wait", check=False)
    assert out.returncode == 1 and "auc = 0.61 is not >= 0.8" in out.stderr

    # gate passes, approval pending: exit 3 after the timeout
    out = run_cli(env, "model", "promote", "credit-risk", "1", "--to", "production", "--wait", "--timeout", "2",
                  check=False)
    assert out.returncode == 3 and "pending" in out.stderr
    pending = q(settings, "SELECT request_id, requested_by FROM requests WHERE status = 'PENDING'")
    assert len(pending) == 1 and pending[0][1] == "tester"
    request_id = pending[0][0]

    own = run_cli(env, "requests", "approve", request_id)  # the requester approving: does not count
    assert "approved" in own.stdout
    run_cli(env | {"MODELOG_PRINCIPAL": "bob"}, "requests", "approve", request_id, "-m", "checked calibration")
    status = client.registry.wait_decision(request_id, timeout=30)
    assert status.approved and "needs" not in (status.reason or "x") and "approval" in status.reason
    assert q(settings, "SELECT version, stage FROM model_versions WHERE model = 'credit-risk' ORDER BY 1") == [
        (1, "production"), (2, "development")]

    # a rule on aliases for this model only; bob rejects through the CLI: nothing changes
    run_cli(env, "policy", "set", "--model", "credit-risk", "--require-approval", "SET_ALIAS=approver")
    out = run_cli(env, "model", "alias", "credit-risk", "champion", "2")
    alias_request = out.stdout.split("request ")[1].split()[0]
    run_cli(env | {"MODELOG_PRINCIPAL": "bob"}, "requests", "reject", alias_request, "-m", "v2 failed the gate")
    rejected = client.registry.wait_decision(alias_request, timeout=30)
    assert rejected.status == "REJECTED" and "rejected by bob: v2 failed the gate" in rejected.reason
    assert q(settings, "SELECT count(*) FROM model_aliases WHERE model = 'credit-risk'") == [(0,)]
    listed = run_cli(env, "requests", "list", "--model", "credit-risk", "--format", "json")
    assert [r["status"] for r in json.loads(listed.stdout)] == ["REJECTED", "APPROVED", "REJECTED"]
    shown = json.loads(run_cli(env, "model", "show", "credit-risk", "--format", "json").stdout)
    assert [(v["version"], v["stage"], v["semver"]) for v in shown] == [(1, "production", "1.0.0"),
                                                                        (2, "development", "1.1.0")]
    out = run_cli(env, "model", "register", "credit-risk", "--semver", "2.0.0", "--tag", "source=cli")
    assert out.stdout.strip() == "registered credit-risk version 3"

    # bad inputs: rejected before publishing, with the field and the rule
    out = run_cli(env, "model", "promote", "no-such-model", "1", "--to", "production", "--wait", check=False)
    assert out.returncode == 2 and "model" in out.stderr and "registered model" in out.stderr
    out = run_cli(env, "model", "alias", "credit-risk", "Bad Alias", "1", check=False)
    assert out.returncode == 2 and "alias" in out.stderr and "lowercase" in out.stderr
    with pytest.raises(ValidationError, match="semver"):
        client.registry.register_model("credit-risk", semver="1.0")

    # the decision is an event on the log, by the processor, in the audit trail
    wait_recorded(settings)
    audit = q(settings, "SELECT actor, actor_kind FROM audit_log WHERE event_type = 'RequestDecided'")
    assert len(audit) == 3 and {a for a in audit} == {("modelog-projector", "SERVICE")}


def test_approvals_two_needs_two_distinct_approvers_and_an_admin_requester_never_counts(env, settings, processor,
                                                                                        client):
    with client.start_run(experiment="gov2", name="r") as run:
        run.log_metric("auc", 0.9)
    run.register_model("fraud", semver="1.0.0")
    run_cli(env, "policy", "set", "--model", "fraud", "--require-approval", "PROMOTE:production=approver",
            "--approvals", "2")
    rules = q(settings, "SELECT name, approvals FROM policies WHERE scope = 'fraud'")
    assert rules == [("approval-promote-production", 2)]
    for who, role in (("tester", "admin"), ("tester", "approver"), ("bob", "approver"), ("carol", "approver")):
        run_cli(env, "access", "grant", who, role)
    out = run_cli(env, "model", "promote", "fraud", "1", "--to", "production")
    request_id = out.stdout.split("request ")[1].split()[0]
    run_cli(env, "requests", "approve", request_id)  # the requester, an admin and approver: does not count
    run_cli(env | {"MODELOG_PRINCIPAL": "bob"}, "requests", "approve", request_id)
    run_cli(env | {"MODELOG_PRINCIPAL": "bob"}, "requests", "approve", request_id)  # bob again: still one
    # every approval is projected (and the decider ran after each, in its batch) ...
    wait_until(lambda: q(settings, f"SELECT count(*) FROM approvals WHERE request_id = '{request_id}'") == [(3,)],
               30, "the three approvals projected")
    assert client.registry.status(request_id).status == "PENDING"  # ... but two distinct approvers are not there
    run_cli(env | {"MODELOG_PRINCIPAL": "carol"}, "requests", "approve", request_id)
    status = client.registry.wait_decision(request_id, timeout=30)
    assert status.approved
    evidence = q(settings, f"SELECT evidence FROM decisions WHERE request_id = '{request_id}'")
    assert dict(evidence[0][0])["approval-promote-production.approved_by"] == "bob, carol"
    out = run_cli(env, "policy", "set", "--approvals", "2", check=False)
    assert out.returncode == 2 and "--approvals" in out.stderr


def test_time_travel_and_rebuild_with_decisions(env, settings, processor, client, tmp_path):
    reg = client.registry
    for _ in range(2):
        reg.register_model("churn")
    assert reg.promote("churn", 1, "production", wait=True).approved
    reg.record_deployment("churn", 1, "prod", endpoint="http://127.0.0.1:1/churn")
    client.wait_projected()
    time.sleep(0.05)
    before = time.time()
    time.sleep(0.05)
    assert reg.promote("churn", 2, "production", wait=True).approved
    assert reg.set_alias("churn", "champion", 2, wait=True).approved
    reg.record_deployment("churn", 2, "prod")
    assert reg.rollback("churn", "prod") == 1
    assert not reg.promote("churn", 2, "production", wait=True).approved  # already there: a visible rejection
    assert reg.delete_version("churn", 1, wait=True).approved
    client.wait_projected()
    wait_recorded(settings)

    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(before)) + f".{int(before % 1 * 1e6):06d}Z"
    out = run_cli(env, "sql", "--as-of", stamp, "--format", "json",
                  "SELECT version, stage FROM model_versions WHERE model = 'churn' ORDER BY version")
    assert json.loads(out.stdout) == [{"version": 1, "stage": "production"}, {"version": 2, "stage": "development"}]
    now = json.loads(run_cli(env, "sql", "--format", "json",
                             "SELECT version, stage FROM model_versions WHERE model = 'churn'").stdout)
    assert now == [{"version": 2, "stage": "production"}]  # version 1 is deleted: hidden, history kept
    assert q(settings, "SELECT version, rollback_of FROM current_deployments WHERE model = 'churn'") == [(1, 2)]
    assert q(settings, "SELECT count(*) FROM stage_history WHERE model = 'churn' AND version = 1") == [(4,)]
    # alias history survives the deletion of version 1 (the alias was on 2)
    assert q(settings, "SELECT alias, version, valid_to IS NULL FROM alias_history WHERE model = 'churn'") == [
        ("champion", 2, True)]

    run_cli(env, "rebuild", "--output", str(tmp_path / "rebuilt.duckdb"))
    processor.stop()
    for view in VIEW_NAMES:
        live = duckdb.connect(str(settings.views_path), read_only=True)
        rebuilt = duckdb.connect(str(tmp_path / "rebuilt.duckdb"), read_only=True)
        try:
            a = sorted(map(repr, live.execute(f"SELECT * FROM {view}").fetchall()))
            b = sorted(map(repr, rebuilt.execute(f"SELECT * FROM {view}").fetchall()))
        finally:
            live.close()
            rebuilt.close()
        assert a == b, view
