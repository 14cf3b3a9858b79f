"""Prometheus exposition from view rows: metric names, types, values, label escaping, lag; the queries
run against a real views file."""

from __future__ import annotations

import math
import re
import urllib.request

import pytest

from factories import monitoring_records
from modelog import Settings
from modelog.wire.codec import Codec
from modelog.wire.errors import ConfigError
from modelog.processors import metrics
from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.query_server import QueryServer
from modelog.processors.store import ViewStore

ROWS = {
    "drift_columns": [
        {"model": "credit-risk", "deployment": "prod", "column": "income", "method": "ks", "score": 0.01,
         "threshold": 0.05, "drift": True},
        {"model": "credit-risk", "deployment": "prod", "column": "city", "method": "psi", "score": None,
         "threshold": 0.2, "drift": None},
    ],
    "drift_windows": [{"model": "credit-risk", "deployment": "prod", "window": 7, "drift_share": 0.5,
                       "dataset_drift": False}],
    "alert_open": [{"model": "credit-risk", "deployment": "prod", "rule": "dataset_drift", "open": 1},
                   {"model": "credit-risk", "deployment": "canary", "rule": "prediction_drift", "open": 0}],
    "alert_changes": [{"model": "credit-risk", "deployment": "prod", "rule": "dataset_drift", "state": "RAISED",
                       "n": 2}],
    "predictions": [{"model": "credit-risk", "deployment": "prod", "predictions": 1500, "dropped": 3}],
    "events": [{"event_type": "RunStarted", "n": 4}],
    "dead_letters": [{"reason": "invalid_event", "n": 1}],
    "positions": [{"topic": "modelog.alerts", "partition": 0, "next_offset": 10},
                  {"topic": "modelog.tracking", "partition": 1, "next_offset": 5}],
}

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*",?)*\})? '
                    r'(-?[0-9.e+-]+|NaN|[+-]Inf)$')


def parse(text: str) -> dict[str, dict]:
    """A strict little parser of the exposition format: {name: {"type", "help", "samples": {labels: value}}}."""
    out: dict[str, dict] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            out.setdefault(name, {"samples": {}})["help"] = help_
        elif line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert typ in ("gauge", "counter"), line
            assert "help" in out[name], f"TYPE before HELP: {line}"
            out[name]["type"] = typ
        else:
            m = SAMPLE.match(line)
            assert m, f"not a valid sample line: {line!r}"
            name = m.group(1)
            assert "type" in out.get(name, {}), f"sample without TYPE: {line}"
            out[name]["samples"][m.group(2) or ""] = m.group(3)
    return out


def test_every_metric_has_help_and_type_and_the_values_of_the_rows():
    text = metrics.render(ROWS, {("modelog.alerts", 0): 12, ("modelog.tracking", 1): 5})
    fams = parse(text)
    assert {n: f["type"] for n, f in fams.items()} == {
        "modelog_drift_score": "gauge", "modelog_drift_threshold": "gauge", "modelog_drift_detected": "gauge",
        "modelog_dataset_drift_share": "gauge", "modelog_dataset_drift": "gauge", "modelog_drift_window": "gauge",
        "modelog_alert_open": "gauge", "modelog_alerts_total": "counter", "modelog_predictions_total": "counter",
        "modelog_predictions_dropped_total": "counter", "modelog_events_projected_total": "counter",
        "modelog_dead_letters_total": "counter", "modelog_processor_next_offset": "gauge",
        "modelog_processor_high_watermark": "gauge", "modelog_processor_lag_records": "gauge",
        "modelog_metrics_query_error": "gauge",
    }
    lab = '{model="credit-risk",deployment="prod",column="income",method="ks"}'
    assert fams["modelog_drift_score"]["samples"] == {lab: "0.01"}  # the NULL score of city is left out
    assert fams["modelog_drift_detected"]["samples"] == {lab: "1"}
    assert fams["modelog_drift_threshold"]["samples"][lab] == "0.05"
    md = '{model="credit-risk",deployment="prod"}'
    assert fams["modelog_dataset_drift_share"]["samples"] == {md: "0.5"}
    assert fams["modelog_dataset_drift"]["samples"] == {md: "0"}
    assert fams["modelog_drift_window"]["samples"] == {md: "7"}
    assert fams["modelog_alert_open"]["samples"] == {
        '{model="credit-risk",deployment="prod",rule="dataset_drift"}': "1",
        '{model="credit-risk",deployment="canary",rule="prediction_drift"}': "0"}
    assert fams["modelog_alerts_total"]["samples"] == {
        '{model="credit-risk",deployment="prod",rule="dataset_drift",state="RAISED"}': "2"}
    assert fams["modelog_predictions_total"]["samples"] == {md: "1500"}
    assert fams["modelog_predictions_dropped_total"]["samples"] == {md: "3"}
    assert fams["modelog_events_projected_total"]["samples"] == {'{event_type="RunStarted"}': "4"}
    assert fams["modelog_dead_letters_total"]["samples"] == {'{reason="invalid_event"}': "1"}
    assert fams["modelog_processor_lag_records"]["samples"] == {
        '{topic="modelog.alerts",partition="0"}': "2", '{topic="modelog.tracking",partition="1"}': "0"}
    assert fams["modelog_processor_next_offset"]["samples"]['{topic="modelog.alerts",partition="0"}'] == "10"
    assert set(fams["modelog_metrics_query_error"]["samples"].values()) == {"0"}


def test_label_values_are_escaped():
    rows = {"alert_open": [{"model": 'we"ird\\mo\ndel', "deployment": "prod", "rule": "r", "open": 1}]}
    text = metrics.render(rows)
    assert 'modelog_alert_open{model="we\\"ird\\\\mo\\ndel",deployment="prod",rule="r"} 1\n' in text
    parse(text)  # still one sample per line


def test_values_are_go_floats():
    assert [metrics.format_value(v) for v in (1, 2.0, 0.25, math.nan, math.inf, -math.inf, True, False, 1e-7)] == \
        ["1", "2", "0.25", "NaN", "+Inf", "-Inf", "1", "0", "1e-07"]


def test_lag_is_high_watermark_minus_position_never_negative_and_only_where_known():
    pos = {("a", 0): 5, ("a", 1): 9}
    assert metrics.lag(pos, {("a", 0): 8, ("a", 1): 7, ("a", 2): 4}) == {("a", 0): 3, ("a", 1): 0, ("a", 2): 4}


def test_empty_results_still_declare_every_metric():
    fams = parse(metrics.render({}))
    assert len(fams) == 16 and all(not f["samples"] for n, f in fams.items() if n != "modelog_metrics_query_error")


def test_a_failing_query_costs_only_its_metrics():
    def query(sql):
        if "alert_incidents" in sql:
            raise RuntimeError("view changed")
        return ROWS[next(n for n, q in metrics.QUERIES.items() if q == sql)]

    fams = parse(metrics.collect(query))
    assert fams["modelog_metrics_query_error"]["samples"]['{query="alert_open"}'] == "1"
    assert fams["modelog_metrics_query_error"]["samples"]['{query="predictions"}'] == "0"
    assert fams["modelog_alert_open"]["samples"] == {}
    assert fams["modelog_predictions_total"]["samples"]


def _alert(codec, event_id, state, occurred_at, alert_id="credit-risk/prod/dataset_drift/0"):
    env = {"event_id": event_id, "event_type": "AlertChanged", "occurred_at": occurred_at,
           "actor": {"principal": "drift", "kind": "SERVICE"},
           "source": {"host": "h", "pid": 1, "program": "tests", "sdk_version": "0.1.0"},
           "entity": {"type": "monitor", "key": "monitor:credit-risk/prod"}}
    return codec.encode("AlertChanged", {
        "envelope": env, "alert_id": alert_id, "model": "credit-risk", "deployment": "prod", "rule": "dataset_drift",
        "state": state, "severity": "warning", "window": 0, "value": 0.6, "threshold": 0.5, "message": "drift"})


@pytest.fixture
def store(tmp_path):
    s = ViewStore(tmp_path / "views.duckdb")
    yield s
    s.close()


def test_queries_run_on_real_views_and_alert_state_follows_the_log(store):
    codec = Codec()
    raised = _alert(codec, "01890f5e-0000-7000-8009-000000000001", "RAISED", 1_760_000_000_000_000)
    store.apply([RawRecord("modelog.alerts", 0, 0, None, b"k", raised)], Projector())
    server = QueryServer(store, highwaters=lambda: {("modelog.alerts", 0): 3}).start()
    try:
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as resp:
            assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            fams = parse(resp.read().decode())
        assert set(fams["modelog_metrics_query_error"]["samples"].values()) == {"0"}
        key = '{model="credit-risk",deployment="prod",rule="dataset_drift"}'
        assert fams["modelog_alert_open"]["samples"] == {key: "1"}
        assert fams["modelog_processor_lag_records"]["samples"] == {'{topic="modelog.alerts",partition="0"}': "2"}
        assert fams["modelog_events_projected_total"]["samples"] == {'{event_type="AlertChanged"}': "1"}

        resolved = _alert(codec, "01890f5e-0000-7000-8009-000000000002", "RESOLVED", 1_760_000_060_000_000)
        store.apply([RawRecord("modelog.alerts", 0, 1, None, b"k", resolved)], Projector())
        fams = parse(server.metrics_text())
        assert fams["modelog_alert_open"]["samples"] == {key: "0"}
        assert fams["modelog_alerts_total"]["samples"] == {
            key[:-1] + ',state="RAISED"}': "1", key[:-1] + ',state="RESOLVED"}': "1"}
    finally:
        server.stop()


def test_drift_and_prediction_queries_read_the_monitoring_views(store):
    codec = Codec()
    recs = monitoring_records()
    values = [codec.encode(t, recs[t]) for t in ("PredictionsLogged", "DriftMeasured")]
    store.apply([RawRecord("modelog.monitoring", 0, i, None, b"k", v) for i, v in enumerate(values)], Projector())
    cur = store.reader()

    def rows(sql):
        rel = cur.execute(sql)
        names = [d[0] for d in rel.description]
        return [dict(zip(names, row)) for row in rel.fetchall()]

    try:
        results = {name: rows(sql) for name, sql in metrics.QUERIES.items()}
    finally:
        cur.close()
    fams = parse(metrics.render(results))
    lab = '{model="credit-risk",deployment="prod",column="income",method="ks"}'
    assert fams["modelog_drift_score"]["samples"] == {lab: "0.01"}
    assert fams["modelog_drift_detected"]["samples"] == {lab: "1"}
    assert fams["modelog_dataset_drift_share"]["samples"] == {'{model="credit-risk",deployment="prod"}': "0.5"}
    assert fams["modelog_predictions_total"]["samples"] == {'{model="credit-risk",deployment="prod"}': "2"}
    assert fams["modelog_predictions_dropped_total"]["samples"] == {'{model="credit-risk",deployment="prod"}': "3"}


def test_the_endpoint_port_is_a_setting(tmp_path):
    assert Settings.load(env={"MODELOG_HOME": str(tmp_path)}).processor_port == 0
    assert Settings.load(env={"MODELOG_HOME": str(tmp_path), "MODELOG_PROCESSOR_PORT": "9464"}).processor_port == 9464
    with pytest.raises(ConfigError, match="MODELOG_PROCESSOR_PORT"):
        Settings.load(env={"MODELOG_HOME": str(tmp_path), "MODELOG_PROCESSOR_PORT": "70000"})
