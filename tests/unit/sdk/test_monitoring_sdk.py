"""Monitoring without a broker: the Monitor SDK's batching and drop policy, the drift processor's
window bookkeeping (count and time windows, redelivery, closing), and the monitoring views."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelog import Client, MemoryEmitter, Monitor, Settings, ValidationError, configure_monitor, log_reference
from modelog.wire import prediction_columns
from modelog.wire.codec import Codec
from modelog.processors.drift_app import DriftState, output_events
from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.store import ViewStore


@pytest.fixture
def client(tmp_path):
    c = Client(Settings.load(env={}, home=tmp_path, principal="svc", linger_ms=5), emitter=MemoryEmitter())
    yield c
    c.close()


def events(client, event_type):
    """The records of ``event_type`` published, as a reader decodes them."""
    codec = Codec()
    return [codec.decode(data).record for e, data in zip(client.emitter.events, client.emitter.encoded)
            if e.event_type == event_type]


def test_monitor_batches_column_wise_and_keeps_types(client):
    with Monitor("credit-risk", "prod", version=2, client=client, batch_rows=3) as m:
        ids = [m.log({"income": 10 + i, "city": "Lyon" if i % 2 else None}, prediction="approve", score=0.5)
               for i in range(7)]
        m.log_labels(ids[0], "approve")
    batches = events(client, "PredictionsLogged")
    assert [len(b["request_ids"]) for b in batches] == [3, 3, 1]
    assert [rid for b in batches for rid in b["request_ids"]] == ids
    cols = {c["name"]: c for c in batches[0]["columns"]}
    assert all(prediction_columns.is_buffer(c) for c in cols.values())  # the buffer form (decision 0025)
    values = {name: prediction_columns.lists(c, 3) for name, c in cols.items()}
    assert values["income"] == ([10.0, 11.0, 12.0], [])
    assert values["city"] == ([], [None, "Lyon", None])
    assert cols["prediction"]["role"] == "PREDICTION" and values["prediction"] == ([], ["approve"] * 3)
    assert cols["score"]["role"] == "SCORE" and values["score"] == ([0.5] * 3, [])
    assert batches[0]["version"] == 2
    (labels,) = events(client, "LabelsLogged")
    assert labels["request_ids"] == [ids[0]] and labels["strings"] == ["approve"]


def test_full_buffer_drops_and_counts_never_silently(client):
    m = Monitor("m", "d", client=client, max_buffer=5, batch_rows=1000, linger_ms=10_000)
    for i in range(12):
        m.log({"x": i})
    assert m.stats() == {"logged": 5, "sent": 0, "dropped": 7, "buffered": 5, "withheld": 0}
    m.close()
    assert sum(b["dropped"] for b in events(client, "PredictionsLogged")) == 7
    assert m.stats()["sent"] == 5


def test_the_buffer_holds_no_collected_container_per_prediction(client):
    """A tuple per buffered prediction is an object the cyclic collector tracks and, at 100,000/s, what made
    the collector take a quarter of a serving process's time (docs/benchmarks.md): the buffer keeps flat lists."""
    import gc

    rows = [{"x": float(i), "city": "Lyon"} for i in range(100)]
    m = Monitor("m", "d", client=client, batch_rows=20_000, linger_ms=60_000)
    m.log(rows[0])  # warm: first-call allocations
    gc.collect()
    before = len(gc.get_objects())
    for i in range(10_000):
        m.log(rows[i % 100], prediction=0.5)
    grown = len(gc.get_objects()) - before
    assert m.stats()["buffered"] == 10_001
    assert grown < 100, f"{grown} tracked objects for 10,000 buffered predictions"
    m.close()
    assert sum(len(b["request_ids"]) for b in events(client, "PredictionsLogged")) == 10_001


def test_bad_input_is_rejected_before_publishing(client):
    with pytest.raises(ValidationError, match="deployment"):
        Monitor("m", "bad deployment!", client=client)
    with pytest.raises(ValidationError, match="on_full"):
        Monitor("m", "d", client=client, on_full="explode")
    with pytest.raises(ValidationError, match="prediction"):
        log_reference("m", 1, pd.DataFrame({"x": [1.0]}), prediction="nope", client=client)
    with pytest.raises(ValidationError, match="methods"):
        configure_monitor("m", methods={"x": "magic"}, client=client)
    assert client.emitter.events == []


def _state():
    return DriftState({}, {}, {}, {}, {}, {})


def _preds(n, start=0, ts0=1_000_000, step=1_000, model="m", value=0.0):
    return {"model": model, "deployment": "d", "version": None, "request_ids": [f"r{start + i}" for i in range(n)],
            "timestamps": [ts0 + (start + i) * step for i in range(n)], "dropped": 0,
            "columns": [{"name": "x", "role": "FEATURE", "numbers": [value + i for i in range(n)], "strings": []}]}


def test_count_windows_close_at_the_configured_size_and_skip_redeliveries():
    st = _state()
    st.configs["m"] = {"window_rows": 4, "window_seconds": None}
    assert st.add_predictions(_preds(3), offset=0) == []
    closed = st.add_predictions(_preds(3, start=3), offset=1)
    assert [(c["window"], c["rows"]) for c in closed] == [(0, 4)]
    assert closed[0]["columns"]["x"]["values"] == [0.0, 1.0, 2.0, 0.0]
    assert st.add_predictions(_preds(3, start=3), offset=1) == []  # redelivered offset: ignored
    assert st.windows["m/d"]["rows"] == 2 and st.windows["m/d"]["window"] == 1
    closed = st.add_predictions(_preds(7, start=6), offset=2)
    assert [(c["window"], c["rows"]) for c in closed] == [(1, 4), (2, 4)]
    assert st.windows["m/d"]["rows"] == 1 and st.windows["m/d"]["window"] == 3
    assert not any(k.startswith("m/d/0/") for k in st.chunks)  # closed windows' chunks are deleted


def test_time_windows_by_event_time_and_late_rows_are_counted():
    st = _state()
    st.configs["m"] = {"window_rows": None, "window_seconds": 1}
    closed = st.add_predictions(_preds(5, ts0=0, step=300_000), offset=0)  # t = 0, .3, .6, .9 | 1.2 s
    assert [(c["window"], c["rows"], c["window_start"], c["window_end"]) for c in closed] == [(0, 4, 0, 900_000)]
    head = st.windows["m/d"]
    assert head["window"] == 1 and head["rows"] == 1
    late = _preds(1, ts0=100_000)  # belongs to window 0, already closed
    st.add_predictions(late, offset=1)
    assert st.windows["m/d"]["dropped"] == 1


def test_measure_and_output_events_are_deterministic():
    st = _state()
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(size=500)})
    from modelog.drift.profile import profile_frame

    st.add_reference({"model": "m", "version": None, "columns": profile_frame(ref)})
    st.configs["m"] = {"window_rows": 200}
    closed = st.add_predictions(_preds(200, value=3.0), offset=0)
    drift, changes = st.measure(closed[0])
    assert drift["dataset_drift"] and drift["columns"][0]["drift"]
    assert [c["state"] for c in changes] == ["RAISED"]
    from modelog.wire.envelope import EventFactory

    factory = EventFactory(Settings.load(env={}, principal="modelog-drift"), program="modelog-drift")
    a, b = output_events(factory, drift, changes), output_events(factory, drift, changes)
    assert [e.event_id for e in a] == [e.event_id for e in b]
    assert [e.event_type for e in a] == ["DriftMeasured", "AlertChanged"]
    codec = Codec()
    for e in a:
        codec.encode(e.event_type, e.record)  # valid against the schemas


def test_monitoring_views_and_performance(tmp_path, client):
    m = Monitor("credit-risk", "prod", client=client, batch_rows=100)
    truth = ["1", "0", "1", "1", "0", "0", "1", "0"]
    preds = ["1", "0", "0", "1", "0", "1", "1", "0"]
    scores = [0.9, 0.1, 0.4, 0.8, 0.3, 0.6, 0.7, 0.2]
    ids = [m.log({"x": float(i)}, prediction=p, score=s, timestamp=1_700_000_000 + i)
           for i, (p, s) in enumerate(zip(preds, scores))]
    m.close()
    m.log_labels(ids, truth)
    drift = {"model": "credit-risk", "deployment": "prod", "version": None, "window": 0,
             "window_start": 1_700_000_000_000_000, "window_end": 1_700_000_007_000_000, "rows": 8, "dropped": 0,
             "drift_share": 0.0, "dataset_drift": False, "columns": []}
    client.publish("DriftMeasured", "monitor", "monitor:credit-risk/prod", **drift)
    store = ViewStore(tmp_path / "v.duckdb")
    codec = Codec()
    recs = [RawRecord("mon", 0, i, None, b"k", codec.encode(e.event_type, e.record))
            for i, e in enumerate(client.emitter.events)]
    store.apply(recs, Projector())
    q = store.reader()
    assert q.execute("SELECT count(*), count(label_text) FROM predictions").fetchone() == (8, 8)
    row = q.execute("SELECT labelled, accuracy, precision_macro, recall_macro, f1_macro, auc FROM performance"
                    ).fetchone()
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    y = [int(t) for t in truth]
    p = [int(v) for v in preds]
    assert row[0] == 8
    assert row[1] == pytest.approx(accuracy_score(y, p))
    assert row[2] == pytest.approx(precision_score(y, p, average="macro"))
    assert row[3] == pytest.approx(recall_score(y, p, average="macro"))
    assert row[4] == pytest.approx(f1_score(y, p, average="macro"))
    assert row[5] == pytest.approx(roc_auc_score(y, scores))
    store.close()


def test_the_drift_app_id_is_per_topic_prefix():
    from modelog.processors.drift_app import drift_app_id

    assert drift_app_id(Settings.load(env={})) == "modelog-projector-drift"  # the name deployed processors have
    assert drift_app_id(Settings.load(env={}, topic_prefix="staging.")) == "modelog-projector-staging-drift"
    assert drift_app_id(Settings.load(env={}, topic_prefix="t1.", processor_id="p")) == "p-t1-drift"


def test_flush_says_how_many_predictions_are_still_buffered_when_time_runs_out(tmp_path):
    import threading

    from modelog import DeliveryError

    gate = threading.Event()

    class StuckEmitter(MemoryEmitter):  # a publisher that cannot keep up: every emit waits for the gate
        def emit(self, events):
            gate.wait(10)
            super().emit(events)

    c = Client(Settings.load(env={}, home=tmp_path, principal="svc", linger_ms=5), emitter=StuckEmitter())
    m = Monitor("m", "d", client=c, batch_rows=10)
    for i in range(50):
        m.log({"x": i})
    with pytest.raises(DeliveryError, match=r"(4\d|50) prediction\(s\) of d still buffered"):
        m.flush(timeout=0.2)
    gate.set()
    m.close()
    assert m.stats() == {"logged": 50, "sent": 50, "dropped": 0, "buffered": 0, "withheld": 0}
    assert sum(len(r["request_ids"]) for r in events(c, "PredictionsLogged")) == 50
    c.close()


def _mixed_frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    income = rng.normal(50, 10, n)
    income[3] = np.nan
    return pd.DataFrame({
        "income": income,                                        # float, a NaN among them
        "age": rng.integers(18, 80, n),                          # int64
        "member": rng.integers(0, 2, n).astype(bool),            # bool: text, as log() makes of it
        "city": [None if i % 5 == 0 else f"c{i % 3}" for i in range(n)],   # text with missing values
        "tier": pd.Categorical([f"t{i % 2}" for i in range(n)]),
        "count": pd.array([None if i == 2 else i for i in range(n)], dtype="Int64"),  # nullable integers
    })


@pytest.mark.parametrize("predictions, scores", [
    (np.linspace(0, 1, 12), None),
    (["approve", None, "deny"] * 4, [0.5, None, 0.25] * 4),
    (pd.Series(np.arange(12)), np.linspace(0, 1, 12)),
    (None, None),
])
def test_a_frame_is_encoded_column_by_column_exactly_as_its_rows_would_be(predictions, scores):
    from modelog.sdk.monitoring import frame_columns, prediction_columns as row_columns

    frame = _mixed_frame(12)
    rows = frame.to_dict(orient="records")
    preds = list(predictions) if predictions is not None else [None] * 12
    sc = list(scores) if scores is not None else [None] * 12
    by_rows = row_columns([(str(i), 0, r, p, s) for i, (r, p, s) in enumerate(zip(rows, preds, sc))])
    assert frame_columns(frame, predictions, scores) == by_rows
    assert [c["name"] for c in by_rows][:6] == list(frame.columns)


def test_log_frame_publishes_batches_of_columns_without_the_buffer(client):
    frame = _mixed_frame(12)
    m = Monitor("credit-risk", "prod", version=3, client=client, batch_rows=5, max_buffer=1, on_full="drop")
    ids = m.log_frame(frame, predictions=np.linspace(0, 1, 12), request_ids=[f"q{i}" for i in range(12)])
    assert ids == [f"q{i}" for i in range(12)]
    batches = events(client, "PredictionsLogged")  # published by the call itself, not the background thread
    assert [b["request_ids"] for b in batches] == [ids[0:5], ids[5:10], ids[10:12]]
    assert all(b["dropped"] == 0 and b["version"] == 3 for b in batches)
    income = [v for b in batches
              for v in prediction_columns.lists(next(c for c in b["columns"] if c["name"] == "income"),
                                                len(b["request_ids"]))[0]]
    assert income[:3] + income[4:] == frame["income"].tolist()[:3] + frame["income"].tolist()[4:]
    assert np.isnan(income[3])
    assert m.stats() == {"logged": 12, "sent": 12, "dropped": 0, "buffered": 0, "withheld": 0}
    generated = m.log_frame(frame.iloc[:2])
    assert len(set(generated)) == 2 and not set(generated) & set(ids)
    m.close()


def test_log_frame_rejects_bad_input_before_publishing(client):
    m = Monitor("m", "d", client=client, sensitive_features=["ssn"])
    with pytest.raises(ValidationError, match="predictions"):
        m.log_frame(pd.DataFrame({"x": [1.0, 2.0]}), predictions=[1])
    with pytest.raises(ValidationError, match="request_ids"):
        m.log_frame(pd.DataFrame({"x": [1.0, 2.0]}), request_ids=["a"])
    with pytest.raises(ValidationError, match=r"features\['ssn'\]"):
        m.log_frame(pd.DataFrame({"x": [1.0], "ssn": ["123"]}))
    m.close()
    with pytest.raises(ValidationError, match="closed"):
        m.log_frame(pd.DataFrame({"x": [1.0]}))
    assert events(client, "PredictionsLogged") == []


@pytest.mark.parametrize("predictions, scores", [
    ([None] * 5 + ["approve", None, "deny"] * 2 + [None], [None] * 5 + [0.5] * 7),
    (np.linspace(0, 1, 12), ["high"] * 3 + [None] * 6 + [0.5, 0.25, None]),
])
def test_log_frame_makes_the_same_batches_as_logging_its_rows_one_by_one(tmp_path, predictions, scores):
    """Per batch too: a batch whose predictions (or scores) are all missing has no such column, and a text
    column with nothing but missing values in a batch is a column of missing numbers, as from log()."""
    frame = _mixed_frame(12)
    frame["city"] = [None] * 5 + ["Lyon"] * 7  # the first batch of 5 has no city
    by_call = {}
    for way in ("rows", "frame"):
        c = Client(Settings.load(env={}, home=tmp_path / way, principal="svc", linger_ms=5), emitter=MemoryEmitter())
        m = Monitor("m", "d", client=c, batch_rows=5)
        if way == "rows":
            for i, r in enumerate(frame.to_dict(orient="records")):
                m.log(r, predictions[i], score=scores[i], request_id=f"q{i}")
                m.flush()  if i % 5 == 4 else None
        else:
            m.log_frame(frame, predictions, scores=scores, request_ids=[f"q{i}" for i in range(12)])
        m.close()
        by_call[way] = [(b["request_ids"], b["columns"]) for b in events(c, "PredictionsLogged")]
        c.close()
    for (ids_f, cols_f), (ids_r, cols_r) in zip(by_call["frame"], by_call["rows"]):
        assert ids_f == ids_r
        assert [c["name"] for c in cols_f] == [c["name"] for c in cols_r]
        for cf, cr in zip(cols_f, cols_r):
            assert cf == cr, cf["name"]
    assert len(by_call["frame"]) == len(by_call["rows"])
    assert [len(ids) for ids, _ in by_call["frame"]] == [5, 5, 2]
    first = {col["name"] for col in by_call["frame"][0][1]}
    assert "city" in first and ("prediction" in first) == (predictions[0] is not None)
