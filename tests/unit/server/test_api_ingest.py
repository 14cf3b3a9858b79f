"""POST /events (the SDK through the API), GET /positions, and the HttpEmitter's delivery guarantee."""

from __future__ import annotations

import dataclasses
import json
import socket

import pytest

from modelog import Client, DeliveryError, MemoryEmitter, Monitor
from modelog.sdk.http_emitter import HttpEmitter, _json_record
from modelog.wire import prediction_columns
from modelog.wire.settings import Settings

API = "/api/v1"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _built(live, principal="mallory"):
    """Events as a remote SDK builds them (its own principal, its own emitter)."""
    outside = MemoryEmitter()
    c = Client(dataclasses.replace(live.settings, principal=principal), emitter=outside)
    run = c.start_run(experiment="remote", environment=False)
    run.log_metrics({"loss": float("nan"), "auc": 0.8}, step=1)
    run.log_params({"lr": 0.1})
    run.end()
    # as the HttpEmitter sends them: a columnar metric batch as its points (JSON has no bytes)
    return run.id, [{"event_type": e.event_type, "key": e.key, "record": _json_record(e)} for e in outside.events]


def test_events_are_published_as_the_tokens_principal(api, tok, live):
    run_id, events = _built(live)
    r = api.post(f"{API}/events", content=json.dumps({"events": events}), headers=auth(tok["writer"]))
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == len(events)
    assert {r["actor"] for r in live.sql("SELECT actor FROM audit_log WHERE entity_key = ?", [run_id])} == {"writer-user"}
    assert live.sql("SELECT status FROM runs WHERE run_id = ?", [run_id]) == [{"status": "FINISHED"}]
    # re-sent (the same event ids): the views keep one copy
    assert api.post(f"{API}/events", content=json.dumps({"events": events}), headers=auth(tok["writer"])).status_code == 200
    assert live.sql("SELECT count(*) AS n FROM metrics WHERE run_id = ?", [run_id]) == [{"n": 2}]
    assert api.get(f"{API}/positions", headers=auth(tok["reader"])).json()["positions"]


def test_bad_events_are_refused_and_nothing_is_published(api, tok, live):
    _, events = _built(live)
    bad = json.loads(json.dumps(events))
    i = next(i for i, e in enumerate(bad) if e["event_type"] == "MetricsLogged")
    bad[i]["record"]["points"][0]["key"] = "bad key!"
    before = len(live.emitter.events)
    r = api.post(f"{API}/events", content=json.dumps({"events": bad}), headers=auth(tok["writer"]))
    assert r.status_code == 422 and r.json()["field"].startswith(f"events[{i}].MetricsLogged.points.0.key")
    wrong = json.loads(json.dumps(events))
    wrong[0]["event_type"] = "Nope"
    r = api.post(f"{API}/events", content=json.dumps({"events": wrong}), headers=auth(tok["writer"]))
    assert r.status_code == 422 and r.json()["field"] == "events[0].event_type"
    r = api.post(f"{API}/events", content=json.dumps({"events": []}), headers=auth(tok["writer"]))
    assert r.status_code == 422 and r.json()["field"] == "events"
    r = api.post(f"{API}/events", content=json.dumps({"events": events}), headers=auth(tok["reader"]))
    assert r.status_code == 403
    assert len(live.emitter.events) == before


def test_events_need_the_permission_of_their_kind(api, tok, live):
    from modelog.sdk.tokens import issue_token

    outside = MemoryEmitter()
    c = Client(dataclasses.replace(live.settings, principal="x"), emitter=outside)
    issue_token(c, "writer-user", ["admin"])
    c.registry.approve("m", "r1")
    forged = [{"event_type": e.event_type, "key": e.key, "record": e.record} for e in outside.events]
    for one in forged:
        r = api.post(f"{API}/events", content=json.dumps({"events": [one]}), headers=auth(tok["writer"]))
        assert r.status_code == 403 and "lacks" in r.json()["detail"]
    decided = json.loads(json.dumps(forged[1]))
    decided["event_type"] = decided["record"]["envelope"]["event_type"] = "RequestDecided"
    r = api.post(f"{API}/events", content=json.dumps({"events": [decided]}), headers=auth(tok["admin"]))
    assert r.status_code == 403 and "processors only" in r.json()["detail"]


def test_the_http_emitter_raises_delivery_error_when_the_server_is_unreachable(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings.load(home=tmp_path, env={"MODELOG_URL": f"http://127.0.0.1:{port}",
                                                 "MODELOG_TOKEN": "mlg_0123456789ab_" + "x" * 43,
                                                 "MODELOG_FLUSH_TIMEOUT": "1"})
    c = Client(settings)
    assert isinstance(c.emitter, HttpEmitter)
    c.create_experiment("e")
    with pytest.raises(DeliveryError, match="not delivered|not acknowledged"):
        c.flush()
    c.emitter._closed = True  # nothing left to deliver


def test_url_needs_a_token(tmp_path):
    from modelog.wire.errors import ConfigError

    with pytest.raises(ConfigError, match="MODELOG_TOKEN"):
        Settings.load(home=tmp_path, env={"MODELOG_URL": "http://x"})
    with pytest.raises(ConfigError, match="MODELOG_URL"):
        Settings.load(home=tmp_path, env={"MODELOG_URL": "x", "MODELOG_TOKEN": "t"})


def test_a_monitor_batch_goes_through_json_as_lists_and_projects_the_same(api, tok, live):
    """PredictionsLogged columns travel as buffers (decision 0025); JSON has no bytes, so the HttpEmitter
    sends them as lists, and the server publishes rows equal to the logged values."""
    outside = MemoryEmitter()
    c = Client(dataclasses.replace(live.settings, principal="mallory"), emitter=outside)
    with Monitor("json-model", "edge", client=c, batch_rows=100) as m:
        for i in range(5):
            m.log({"income": 1000.0 + i, "city": None if i == 2 else f"c{i % 2}"}, prediction="yes" if i else None)
    (event,) = [e for e in outside.events if e.event_type == "PredictionsLogged"]
    assert all(prediction_columns.is_buffer(col) for col in event.record["columns"])
    record = _json_record(event)
    assert not any(prediction_columns.is_buffer(col) for col in record["columns"])
    body = {"events": [{"event_type": event.event_type, "key": event.key, "record": record}]}
    r = api.post(f"{API}/events", content=json.dumps(body), headers=auth(tok["writer"]))
    assert r.status_code == 200, r.text
    rows = live.sql("SELECT features['income'] AS income, feature_text['city'] AS city, prediction_text "
                    "FROM predictions WHERE model = 'json-model' ORDER BY 1")
    assert rows == [{"income": 1000.0 + i, "city": None if i == 2 else f"c{i % 2}",
                     "prediction_text": "yes" if i else None} for i in range(5)]
