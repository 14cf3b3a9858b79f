"""Monitoring routes (drift, performance, alerts, predictions), in-process over real views (see conftest.py)."""

from __future__ import annotations

import copy

import pytest
from factories import monitoring_records

from modelog.server.api.monitoring import MAX_ROWS
from modelog.sdk.monitoring import BATCH_ROWS
from modelog.wire import prediction_columns
from modelog.wire.envelope import Event

API = "/api/v1"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def monitored(live, tok):
    """credit-risk/prod: a reference, two predictions with labels, one drift window, one alert raised."""
    recs = monitoring_records()
    live.emitter.emit([Event(t, "monitor:credit-risk", copy.deepcopy(recs[t]))
                       for t in ("ReferenceProfileLogged", "PredictionsLogged", "LabelsLogged", "DriftMeasured",
                                 "AlertChanged")])
    live.project()


def test_drift_windows_with_their_columns(api, tok, monitored):
    r = api.get(f"{API}/monitoring/credit-risk/drift", headers=auth(tok["reader"]))
    assert r.status_code == 200, r.text
    [w] = r.json()["windows"]
    assert w["deployment"] == "prod" and w["window"] == 0 and w["dataset_drift"] is True and w["drift_share"] == 0.5
    [c] = w["columns"]
    assert c["column"] == "income" and c["method"] == "ks" and c["drift"] is True and c["score"] == 0.01
    assert api.get(f"{API}/monitoring/credit-risk/drift?deployment=other",
                   headers=auth(tok["reader"])).json()["windows"] == []
    assert api.get(f"{API}/monitoring/credit-risk/drift?from=2030-01-01T00:00Z",
                   headers=auth(tok["reader"])).json()["windows"] == []
    r = api.get(f"{API}/monitoring/credit-risk/drift?from=2020-01-01&to=2030-01-01T00:00:00%2B02:00",
                headers=auth(tok["reader"]))
    assert len(r.json()["windows"]) == 1


def test_drift_errors(api, tok, monitored):
    r = api.get(f"{API}/monitoring/credit-risk/drift?from=yesterday", headers=auth(tok["reader"]))
    assert r.status_code == 422 and r.json()["field"] == "from"
    assert api.get(f"{API}/monitoring/nobody/drift", headers=auth(tok["reader"])).status_code == 404
    assert api.get(f"{API}/monitoring/nobody/performance", headers=auth(tok["reader"])).status_code == 404
    assert api.get(f"{API}/monitoring/credit-risk/drift").status_code == 401


def test_performance_per_window(api, tok, monitored):
    r = api.get(f"{API}/monitoring/credit-risk/performance", headers=auth(tok["reader"]))
    assert r.status_code == 200
    [w] = r.json()["windows"]
    assert w["deployment"] == "prod" and w["labelled"] == 2 and w["window_start"] is not None


def test_alerts_by_status(api, tok, live, monitored):
    r = api.get(f"{API}/alerts?status=open", headers=auth(tok["reader"]))
    [a] = r.json()["alerts"]
    assert a["status"] == "OPEN" and a["model"] == "credit-risk" and [c["state"] for c in a["changes"]] == ["RAISED"]
    assert api.get(f"{API}/alerts?status=resolved", headers=auth(tok["reader"])).json()["alerts"] == []
    resolved = copy.deepcopy(monitoring_records()["AlertChanged"])
    resolved["state"] = "RESOLVED"
    resolved["envelope"]["event_id"] = "01890f5e-0000-7000-8009-0000000000ff"
    live.emitter.emit([Event("AlertChanged", "monitor:credit-risk", resolved)])
    live.project()
    [a] = api.get(f"{API}/alerts?status=resolved&model=credit-risk", headers=auth(tok["reader"])).json()["alerts"]
    assert [c["state"] for c in a["changes"]] == ["RAISED", "RESOLVED"]
    r = api.get(f"{API}/alerts?status=closed", headers=auth(tok["reader"]))
    assert r.status_code == 422 and r.json()["field"] == "status"


def _batch(n: int, **kw) -> dict:
    rows = [{"features": {"income": 1000.0 + i, "city": "Lyon" if i % 2 else "Oslo"}, "prediction": i % 2,
             "score": 0.5, "request_id": f"r{i}", "timestamp": 1_760_000_000 + i} for i in range(n)]
    return {"model": "credit-risk", "deployment": "prod-eu", "version": 3, "rows": rows, **kw}


def test_predictions_are_published_like_the_monitor_does(api, tok, live):
    r = api.post(f"{API}/predictions", json=_batch(BATCH_ROWS + 5), headers=auth(tok["writer"]))
    assert r.status_code == 202, r.text
    assert r.json()["events"] == 2 and r.json()["rows"] == BATCH_ROWS + 5
    events = [e for e in live.emitter.events if e.event_type == "PredictionsLogged"]
    assert [len(e.record["request_ids"]) for e in events] == [BATCH_ROWS, 5]
    e = events[0]
    assert e.key == "monitor:credit-risk" and e.record["envelope"]["actor"]["principal"] == "writer-user"
    cols = {c["name"]: c for c in e.record["columns"]}
    n = len(e.record["request_ids"])
    income, city = prediction_columns.lists(cols["income"], n), prediction_columns.lists(cols["city"], n)
    assert income[0][:2] == [1000.0, 1001.0] and city[1][:2] == ["Oslo", "Lyon"]
    assert cols["prediction"]["role"] == "PREDICTION" and cols["score"]["role"] == "SCORE"
    assert e.record["timestamps"][1] == 1_760_000_001_000_000
    rows = live.sql("SELECT count(*) AS n, min(version) AS v FROM predictions WHERE deployment = 'prod-eu'")
    assert rows == [{"n": BATCH_ROWS + 5, "v": 3}]


@pytest.mark.parametrize("body, status, field", [
    (_batch(1, model="bad name!"), 422, "model"),
    (_batch(1, version=0), 422, "version"),
    ({"model": "m", "deployment": "d", "rows": []}, 422, "rows"),
    ({"model": "m", "deployment": "d", "rows": [{"prediction": 1}]}, 422, "rows.0.features"),
    ({"model": "m", "deployment": "d", "rows": [{"features": {"x": {"nested": 1}}}]}, 422, "rows[0].features['x']"),
    ({"model": "m", "deployment": "d", "rows": [{"features": {}, "timestamp": "soon"}]}, 422, "rows[0].timestamp"),
])
def test_bad_predictions_are_422_and_nothing_is_published(api, tok, live, body, status, field):
    before = len(live.emitter.events)
    r = api.post(f"{API}/predictions", json=body, headers=auth(tok["writer"]))
    assert r.status_code == status, r.text
    assert r.json()["field"] == field
    assert len(live.emitter.events) == before


def test_too_many_predictions_are_413_naming_the_limit(api, tok, live):
    before = len(live.emitter.events)
    r = api.post(f"{API}/predictions", json={"model": "m", "deployment": "d", "rows": [{"features": {}}] * (MAX_ROWS + 1)},
                 headers=auth(tok["writer"]))
    assert r.status_code == 413 and r.json()["limit"] == MAX_ROWS and r.json()["field"] == "rows"
    assert str(MAX_ROWS) in r.json()["detail"] and len(live.emitter.events) == before


def test_readers_cannot_log_predictions(api, tok):
    r = api.post(f"{API}/predictions", json=_batch(1), headers=auth(tok["reader"]))
    assert r.status_code == 403
