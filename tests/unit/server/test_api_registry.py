"""Registry and lineage routes, in-process over real views (see conftest.py)."""

from __future__ import annotations

import pytest

API = "/api/v1"
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


APPROVAL = [{"name": "needs-approval", "kind": "APPROVAL", "action": "PROMOTE", "stage": "production",
             "role": "approver"}]


@pytest.fixture
def trained(live, tok):
    """A finished run with metrics, registered twice as credit-risk (versions 1 and 2) by maintainer-user."""
    c = live.client("trainer")
    run = c.start_run(experiment="credit", name="gbt", environment=False)
    run.log_metrics({"auc": 0.91, "loss": 0.2}, step=1)
    run.end()
    c.flush()
    live.client("root").registry.grant("approver-user", "approver")
    live.project()
    return run.id


def _register(api, tok, run_id, **kw):
    r = api.post(f"{API}/models/credit-risk/versions", json={"run_id": run_id, "artifact": "model.pkl", **kw},
                 headers=auth(tok["maintainer"]))
    assert r.status_code == 201, r.text
    return r.json()


def test_register_list_and_show_a_model(api, tok, live, trained):
    v1 = _register(api, tok, trained, semver="1.0.0", tags={"team": "risk"})
    v2 = _register(api, tok, trained, semver="1.1.0")
    assert (v1["version"], v2["version"]) == (1, 2)
    rows = live.sql("SELECT actor FROM audit_log WHERE event_type = 'ModelVersionRegistered'")
    assert {r["actor"] for r in rows} == {"maintainer-user"}

    r = api.get(f"{API}/models", headers=auth(tok["reader"]))
    assert r.status_code == 200
    [m] = r.json()["models"]
    assert m["model"] == "credit-risk" and m["latest_version"] == 2 and m["stages"] == {"development": [1, 2]}

    r = api.get(f"{API}/models/credit-risk", headers=auth(tok["reader"]))
    assert r.status_code == 200
    body = r.json()
    assert [v["version"] for v in body["versions"]] == [1, 2]
    v = body["versions"][0]
    assert v["semver"] == "1.0.0" and v["stage"] == "development" and v["run"]["metrics"] == {"auc": 0.91, "loss": 0.2}
    assert v["run"]["name"] == "gbt" and body["pending_requests"] == [] and body["deployments"] == []
    assert {(h["version"], h["stage"]) for h in body["stage_history"]} == {(1, "development"), (2, "development")}


def test_unknown_model_run_and_version_are_404(api, tok, trained):
    assert api.get(f"{API}/models/nope", headers=auth(tok["reader"])).status_code == 404
    r = api.post(f"{API}/models/m/versions", json={"run_id": "no-such-run"}, headers=auth(tok["maintainer"]))
    assert r.status_code == 404 and "run_id" in r.json()["detail"]
    _register(api, tok, trained)
    r = api.post(f"{API}/models/credit-risk/versions/9/promote", json={"to": "staging"},
                 headers=auth(tok["maintainer"]))
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = api.post(f"{API}/models/ghost/versions/1/promote", json={"to": "staging"}, headers=auth(tok["maintainer"]))
    assert r.status_code == 404
    assert api.post(f"{API}/requests/nope/approve", json={}, headers=auth(tok["approver"])).status_code == 404


def test_bad_input_is_422_naming_the_field_and_publishes_nothing(api, tok, live, trained):
    before = len(live.emitter.events)
    r = api.post(f"{API}/models/bad name!/versions", json={}, headers=auth(tok["maintainer"]))
    assert r.status_code == 422 and r.json()["field"] == "name"
    r = api.post(f"{API}/models/credit-risk/versions", json={"semver": "not-a-semver"}, headers=auth(tok["maintainer"]))
    assert r.status_code == 422 and "semver" in r.json()["field"]
    _register(api, tok, trained)
    before = len(live.emitter.events)
    r = api.post(f"{API}/models/credit-risk/versions/1/promote", json={"to": "heaven"}, headers=auth(tok["maintainer"]))
    assert r.status_code == 422 and r.json()["field"] == "to" and "production" in r.json()["rule"]
    r = api.get(f"{API}/requests?status=maybe", headers=auth(tok["reader"]))
    assert r.status_code == 422 and r.json()["field"] == "status"
    assert len(live.emitter.events) == before


def test_permissions_reader_and_approver(api, tok, trained):
    r = api.post(f"{API}/models/credit-risk/versions", json={"run_id": trained}, headers=auth(tok["reader"]))
    assert r.status_code == 403 and "'registry'" in r.json()["detail"]
    r = api.post(f"{API}/models/credit-risk/versions", json={"run_id": trained}, headers=auth(tok["approver"]))
    assert r.status_code == 403
    _register(api, tok, trained)
    r = api.post(f"{API}/models/credit-risk/versions/1/promote", json={"to": "staging"}, headers=auth(tok["writer"]))
    assert r.status_code == 403


def test_promotion_needing_approval_pending_then_approved(api, tok, live, trained):
    live.client("root").registry.set_policy(APPROVAL)
    live.project()
    _register(api, tok, trained)
    r = api.post(f"{API}/models/credit-risk/versions/1/promote", json={"to": "production", "comment": "go",
                                                                         "wait": True, "timeout": 5},
                 headers=auth(tok["maintainer"]))
    assert r.status_code == 202, r.text
    req = r.json()
    assert req["status"] == "PENDING" and req["action"] == "PROMOTE"
    r = api.get(f"{API}/requests?status=pending", headers=auth(tok["reader"]))
    assert [q["request_id"] for q in r.json()["requests"]] == [req["request_id"]]
    assert r.json()["requests"][0]["requested_by"] == "maintainer-user"
    shown = api.get(f"{API}/models/credit-risk", headers=auth(tok["reader"])).json()
    assert [p["request_id"] for p in shown["pending_requests"]] == [req["request_id"]]

    r = api.post(f"{API}/requests/{req['request_id']}/approve", json={"comment": "ok"}, headers=auth(tok["reader"]))
    assert r.status_code == 403
    r = api.post(f"{API}/requests/{req['request_id']}/approve", json={"comment": "ok"},
                 headers=auth(tok["approver"]))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "APPROVED"
    assert api.get(f"{API}/requests?status=approved", headers=auth(tok["reader"])).json()["requests"][0][
        "request_id"] == req["request_id"]
    [v] = api.get(f"{API}/models/credit-risk", headers=auth(tok["reader"])).json()["versions"]
    assert v["stage"] == "production"
    approvals = live.sql("SELECT approver FROM approvals WHERE request_id = ?", [req["request_id"]])
    assert approvals == [{"approver": "approver-user"}]
    r = api.post(f"{API}/requests/{req['request_id']}/reject", json={}, headers=auth(tok["approver"]))
    assert r.status_code == 409 and r.json()["status_now"] == "APPROVED"


def test_the_processor_still_decides_a_requester_cannot_approve_their_own(api, tok, live, trained):
    live.client("root").registry.set_policy(APPROVAL)
    live.client("root").registry.grant("admin-user", "approver")
    live.project()
    _register(api, tok, trained)
    req = api.post(f"{API}/models/credit-risk/versions/1/promote", json={"to": "production"},
                   headers=auth(tok["admin"])).json()
    r = api.post(f"{API}/requests/{req['request_id']}/approve", json={}, headers=auth(tok["admin"]))
    assert r.status_code == 202 and r.json()["status"] == "PENDING"  # requester's own approval does not count
    r = api.post(f"{API}/requests/{req['request_id']}/reject", json={"comment": "no"}, headers=auth(tok["approver"]))
    assert r.status_code == 200 and r.json()["status"] == "REJECTED"


def test_promotion_without_policy_is_approved_at_once(api, tok, trained):
    _register(api, tok, trained)
    r = api.post(f"{API}/models/credit-risk/versions/1/promote", json={"to": "staging", "wait": True},
                 headers=auth(tok["maintainer"]))
    assert r.status_code == 200 and r.json()["status"] == "APPROVED"
    m = api.get(f"{API}/models", headers=auth(tok["reader"])).json()["models"][0]
    assert m["stages"] == {"staging": [1]}


# -- lineage --------------------------------------------------------------------------


def test_lineage_upstream_and_downstream(api, tok, live, trained):
    import pandas as pd

    c = live.client("trainer")
    run = c.start_run(experiment="credit", environment=False)
    ds = run.log_dataset("applications", pd.DataFrame({"x": [1, 2, 3]}), role="train")
    run.end()
    c.flush()
    live.project()
    mv = c.registry.register_model("credit-risk", run_id=run.id, artifact="model.pkl")
    c.registry.record_deployment("credit-risk", mv.version, "prod")
    live.project()

    r = api.get(f"{API}/lineage/deployment:credit-risk/prod", params={"depth": 10}, headers=auth(tok["reader"]))
    assert r.status_code == 200, r.text
    g = r.json()
    ids = {n["id"]: n for n in g["nodes"]}
    assert ids["deployment:credit-risk/prod"]["depth"] == 0
    assert ds.node in ids and ids[ds.node]["kind"] == "dataset" and f"run:{run.id}" in ids
    edges = {(e["src"], e["relation"], e["dst"]) for e in g["edges"]}
    assert (ds.node, "consumed", f"run:{run.id}") in edges
    assert (f"model:credit-risk/{mv.version}", "deployed", "deployment:credit-risk/prod") in edges

    prefix = ds.node[: ds.node.index("@") + 13]
    r = api.get(f"{API}/lineage/{prefix}?direction=downstream", headers=auth(tok["reader"]))
    assert r.status_code == 200
    g = r.json()
    assert g["entity"] == ds.node
    assert "deployment:credit-risk/prod" in {n["id"] for n in g["nodes"]}
    r = api.get(f"{API}/lineage/{ds.node}?direction=downstream&depth=1", headers=auth(tok["reader"]))
    assert {n["id"] for n in r.json()["nodes"]} == {ds.node, f"run:{run.id}"}


@pytest.mark.parametrize("path, status, field", [
    ("/lineage/bogus", 422, "entity"),
    ("/lineage/run:nope", 404, None),
    ("/lineage/model:m/1?direction=sideways", 422, "direction"),
    ("/lineage/model:m/1?depth=21", 422, "depth"),
    ("/lineage/model:m/1?depth=0", 422, "depth"),
])
def test_lineage_bad_requests(api, tok, path, status, field):
    r = api.get(API + path, headers=auth(tok["reader"]))
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    if field:
        assert r.json()["field"] == field
