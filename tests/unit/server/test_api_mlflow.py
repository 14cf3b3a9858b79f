"""The MLflow gateway in-process (TestClient over the real projector and DuckDB views, see conftest.py).

The stock mlflow client itself drives the gateway in tests/integration/test_mlflow_gateway.py; here: the
error shape, authentication, the id and filter mappings, NaN on the wire, governed requests left pending.
"""

from __future__ import annotations

import base64
import math

import pytest

from modelog.server.filters import parse_filter
from modelog.server.mlflow import search
from modelog.server.mlflow.common import MlflowError, experiment_id

M = "/api/2.0/mlflow"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_errors_are_mlflow_json_with_mlflow_codes(api, tok):
    r = api.get(f"{M}/experiments/get-by-name", params={"experiment_name": "x"})
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
    assert "no credentials" in r.json()["message"]
    r = api.post(f"{M}/runs/create", json={"experiment_id": "0"}, headers=auth(tok["reader"]))
    assert r.status_code == 403 and r.json() == {
        "error_code": "PERMISSION_DENIED",
        "message": "reader-user lacks the 'write' permission (roles: reader)"}
    r = api.get(f"{M}/experiments/get-by-name", params={"experiment_name": "nope"}, headers=auth(tok["reader"]))
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    r = api.post(f"{M}/traces/start", json={}, headers=auth(tok["reader"]))
    assert r.status_code == 404 and r.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    r = api.post(f"{M}/runs/delete", json={"run_id": "x"}, headers=auth(tok["writer"]))
    assert r.status_code == 501 and r.json()["error_code"] == "NOT_IMPLEMENTED"
    # the REST API keeps its problem documents
    r = api.get("/api/v1/runs/nope", headers=auth(tok["reader"]))
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


def test_basic_auth_takes_the_token_as_password_on_the_gateway_only(api, tok):
    r = api.post(f"{M}/experiments/search", json={}, headers=basic("whoever", tok["reader"]))
    assert r.status_code == 200 and r.json() == {"experiments": []}
    r = api.post(f"{M}/experiments/search", json={}, headers=basic("whoever", "mlg_nope"))
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
    r = api.get("/api/v1/experiments", headers=basic("whoever", tok["reader"]))
    assert r.status_code == 401  # the REST API takes bearer tokens only


def test_a_run_through_the_gateway_is_modelog_events_by_the_token_principal(api, tok, live):
    w = auth(tok["writer"])
    r = api.post(f"{M}/experiments/create", json={"name": "gw"}, headers=w)
    assert r.status_code == 200, r.text
    eid = r.json()["experiment_id"]
    assert eid == experiment_id("gw") and eid.isdigit()
    r = api.post(f"{M}/runs/create", json={"experiment_id": eid, "run_name": "r1", "start_time": 1_700_000_000_000,
                                          "tags": [{"key": "mlflow.user", "value": "someone-else"}]}, headers=w)
    assert r.status_code == 200, r.text
    info = r.json()["run"]["info"]
    rid = info["run_id"]
    assert info["user_id"] == "writer-user" and info["start_time"] == 1_700_000_000_000
    assert info["artifact_uri"] == f"mlflow-artifacts:/{eid}/{rid}/artifacts"
    r = api.post(f"{M}/runs/log-batch", headers=w, json={
        "run_id": rid, "params": [{"key": "lr", "value": "0.1"}], "tags": [{"key": "t", "value": "v"}],
        "metrics": [{"key": "loss", "value": "NaN", "timestamp": 1_700_000_000_500, "step": 0},
                    {"key": "loss", "value": 0.5, "timestamp": 1_700_000_000_600, "step": 1}]})
    assert r.status_code == 200, r.text
    run = api.get(f"{M}/runs/get", params={"run_id": rid}, headers=w).json()["run"]
    assert run["data"]["params"] == [{"key": "lr", "value": "0.1"}]
    assert run["data"]["metrics"] == [{"key": "loss", "value": 0.5, "timestamp": 1_700_000_000_600, "step": 1}]
    history = api.get(f"{M}/metrics/get-history", params={"run_id": rid, "metric_key": "loss"}, headers=w).json()
    assert [(m["step"], m["value"]) for m in history["metrics"]] == [(0, "NaN"), (1, 0.5)]  # protobuf JSON's NaN
    r = api.post(f"{M}/runs/update", json={"run_id": rid, "status": "FINISHED", "end_time": 1}, headers=w)
    assert r.status_code == 200 and r.json()["run_info"]["status"] == "FINISHED"
    listed = api.get(f"{M}/artifacts/list", params={"run_id": rid}, headers=w).json()
    assert listed == {"root_uri": f"mlflow-artifacts:/{eid}/{rid}/artifacts", "files": []}
    actors = live.sql("SELECT DISTINCT actor FROM audit_log WHERE entity_key = ?", [rid])
    assert actors == [{"actor": "writer-user"}]
    # params are immutable: a different value is refused, nothing published
    r = api.post(f"{M}/runs/log-parameter", json={"run_id": rid, "key": "lr", "value": "0.2"}, headers=w)
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "params are immutable" in r.json()["message"]


def test_experiment_ids_are_derived_from_names_and_default_is_zero():
    assert experiment_id("default") == "0"
    assert experiment_id("credit") == experiment_id("credit") != experiment_id("credit2")
    assert 0 < int(experiment_id("credit")) < 2 ** 48


@pytest.mark.parametrize("mlflow_filter, modelog_filter", [
    ("metrics.acc > 0.9 and params.lr = '0.01'", "metrics.`acc` > 0.9 AND params.`lr` = '0.01'"),
    ("tags.`mlflow.user` = \"bob\" AND attributes.status != 'FAILED'",
     "tags.`mlflow.user` = 'bob' AND status != 'FAILED'"),
    ("attributes.run_name LIKE 'base%'", "name LIKE 'base%'"),
    ("attribute.run_id IN ('a', 'b')", "run_id IN ( 'a' , 'b' )"),
    ("attributes.user_id = 'ml-team'", "actor = 'ml-team'"),
    ("params.\"a b\" = 'it''s'", "params.`a b` = 'it''s'"),
    ("attributes.start_time >= 1700000000000", "start_time >= '2023-11-14T22:13:20+00:00'"),
    ("tags.owner IS NULL", "tags.`owner` IS NULL"),
    ("", ""),
])
def test_mlflow_filters_become_modelog_filters(mlflow_filter, modelog_filter):
    assert search.translate(mlflow_filter) == modelog_filter
    if modelog_filter:
        parse_filter(modelog_filter)  # and modelog's parser takes them


def test_runs_filter_scopes_experiments_and_order_by_maps_attributes():
    where = search.runs_filter("metrics.auc > 0.8", ["a", "it's"])
    assert where == "experiment IN ('a', 'it''s') AND (metrics.`auc` > 0.8)"
    parse_filter(where)
    assert search.runs_order(["metrics.auc DESC", "attributes.start_time", "run_name ASC"]) == \
        "metrics.`auc` DESC, start_time, name ASC"
    assert search.runs_order([]) is None


@pytest.mark.parametrize("bad, why", [
    ("datasets.name = 'x'", "Invalid entity type 'datasets'"),
    ("attributes.artifact_uri = 'x'", "Invalid attribute key 'artifact_uri'"),
    ("metrics.auc > 0.8 or params.x = '1'", "unexpected 'or'"),
    ("metrics.auc > 0.8 ;", "cannot parse"),
])
def test_unmappable_filters_are_invalid_parameter_errors(bad, why):
    with pytest.raises(MlflowError) as err:
        search.translate(bad)
    assert err.value.extra["error_code"] == "INVALID_PARAMETER_VALUE" and why in str(err.value)


def test_experiment_search_filters_and_orders():
    exps = [{"name": "b", "creation_time": 2}, {"name": "a", "creation_time": 1}, {"name": "ab", "creation_time": 3}]
    assert [e["name"] for e in search.filter_experiments(exps, "name LIKE 'a%'")] == ["a", "ab"]
    assert [e["name"] for e in search.order_experiments(exps, ["name ASC"])] == ["a", "ab", "b"]
    assert [e["name"] for e in search.order_experiments(exps, None)] == ["ab", "b", "a"]
    page, token = search.page(exps, 2, None)
    assert len(page) == 2 and search.page(exps, 2, token) == ([exps[2]], None)
    assert math.isfinite(search.offset(None))


def test_a_governed_alias_left_pending_is_an_aborted_error_naming_the_request(api, tok, live):
    c = live.client("trainer")
    run = c.start_run(experiment="credit", name="gbt", environment=False)
    run.end()
    root = live.client("root")
    root.registry.set_policy([{"name": "alias-approval", "kind": "APPROVAL", "action": "SET_ALIAS",
                               "role": "approver"}])
    root.flush()
    live.project()
    m = auth(tok["maintainer"])
    r = api.post(f"{M}/model-versions/create", json={"name": "credit", "source": f"runs:/{run.id}/model.pkl",
                                                     "run_id": run.id}, headers=m)
    assert r.status_code == 200, r.text
    assert r.json()["model_version"]["version"] == "1" and r.json()["model_version"]["current_stage"] == "None"
    r = api.post(f"{M}/registered-models/alias", json={"name": "credit", "alias": "champion", "version": "1"},
                 headers=m)
    assert r.status_code == 409 and r.json()["error_code"] == "ABORTED", r.text
    pending = live.sql("SELECT request_id, status, requested_by FROM requests")
    assert [(p["status"], p["requested_by"]) for p in pending] == [("PENDING", "maintainer-user")]
    assert pending[0]["request_id"] in r.json()["message"]
    r = api.get(f"{M}/registered-models/alias", params={"name": "credit", "alias": "champion"}, headers=m)
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_registered_models_filter_by_name_and_tags_as_the_client_sends_them(api, tok, live):
    c = live.client("trainer")
    run = c.start_run(experiment="credit", name="gbt", environment=False)
    run.end()
    c.registry.register_model("credit", run_id=run.id, artifact="model.pkl", tags={"team": "risk"}, wait=False)
    c.registry.register_model("other", run_id=run.id, artifact="model.pkl", wait=False)
    c.registry.annotate("other", tags={"team": "ops"})
    c.flush()
    live.project()
    r = auth(tok["reader"])

    def names(flt: str) -> list[str]:
        got = api.get(f"{M}/registered-models/search", params={"filter": flt}, headers=r)
        assert got.status_code == 200, got.text
        return [m["name"] for m in got.json()["registered_models"]]

    # the client appends the prompt clause itself: a model without the tag is kept
    assert names("name LIKE 'cred%' AND tag.`mlflow.prompt.is_prompt` != 'true'") == ["credit"]
    assert names("tags.team = 'ops'") == ["other"]
    assert names("") == ["credit", "other"]
    bad = api.get(f"{M}/registered-models/search", params={"filter": "version > 2"}, headers=r)
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
