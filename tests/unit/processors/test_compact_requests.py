"""Compact requests in a PredictionsLogged batch (decision 0030): the ids the SDK generates as one prefix and
int64 counters, the timestamps as int64 microseconds. Every reader (through the codec) sees the first form; a
broken compact form is dead-lettered naming the field; the views are the same whichever form a batch has."""

import io
from pathlib import Path

import fastavro
import numpy as np
import pandas as pd
import pytest

from factories import monitoring_records, wire_form
from forms import raw, rows_of
from modelog import Client, MemoryEmitter, Monitor, Settings
from modelog.processors.projector import Projector
from modelog.processors.store import ViewStore
from modelog.wire import prediction_columns
from modelog.wire.codec import Codec
from modelog.wire.errors import DecodeError
from modelog.wire.schemas import current_schemas

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
TABLES = ("log_predictions", "log_prediction_batches", "predictions", "prediction_rates")


def _as_written(data: bytes) -> dict:
    """The record as its writer wrote it (plain fastavro, no codec: the compact fields as they are)."""
    schema = current_schemas()["PredictionsLogged"]
    assert data[2:10] == schema.fingerprint
    return fastavro.schemaless_reader(io.BytesIO(data[10:]), schema.parsed, schema.parsed)


def _first_form() -> dict:
    record = monitoring_records()["PredictionsLogged"]
    record["columns"] = [c for c in record["columns"] if not c.get("sealed")]
    return record


def test_the_released_sample_is_compact_and_reads_as_lists():
    (path,) = [p for p in SAMPLES.glob("PredictionsLogged.*.bin")
               if p.stem.split(".")[1] == current_schemas()["PredictionsLogged"].fingerprint.hex()]
    written = _as_written(path.read_bytes())
    assert written["request_ids"] == [] and written["timestamps"] == []
    assert written["request_id_prefix"] == "r"
    assert np.frombuffer(written["request_id_counters"], "<i8").tolist() == [1, 2]
    record = Codec().decode(path.read_bytes()).record
    assert record["request_ids"] == ["r1", "r2"]
    assert record["timestamps"] == [1_760_000_001_000_000, 1_760_000_002_000_000]
    assert record["request_id_prefix"] is None and record["request_id_counters"] is None
    assert record["timestamp_values"] is None


def test_both_forms_project_the_same_rows(tmp_path):
    codec, projector = Codec(), Projector()
    lists = _first_form()
    compact = wire_form("PredictionsLogged", lists)
    assert compact["request_ids"] == [] and compact["timestamp_values"]
    got = []
    for record in (lists, compact):
        store = ViewStore(tmp_path / f"{len(got)}.duckdb")
        try:
            assert store.apply(raw([codec.encode("PredictionsLogged", record)]), projector)[0].applied == 1
            got.append({t: rows_of(store, t) for t in TABLES})
        finally:
            store.close()
    assert got[0]["log_predictions"] and got[0] == got[1]


BROKEN = [
    (lambda r: r.update(request_id_counters=b"\x01" * 12), "request_id_counters", "8 bytes per request"),
    (lambda r: r.update(request_id_prefix=None), "request_id_prefix", "must be set"),
    (lambda r: r.update(request_ids=["r1", "r2"]), "request_ids", "must be empty"),
    (lambda r: r.update(timestamp_values=b"\x00" * 24), "timestamp_values", "(2 requests), got 24 bytes"),
    (lambda r: r.update(timestamps=[1, 2]), "timestamps", "must be empty"),
]


@pytest.mark.parametrize("break_it, field, rule", BROKEN, ids=[b[1] + str(i) for i, b in enumerate(BROKEN)])
def test_a_broken_compact_form_is_refused_naming_the_field(break_it, field, rule):
    codec = Codec()
    record = wire_form("PredictionsLogged", _first_form())
    break_it(record)
    with pytest.raises(DecodeError) as err:
        codec.decode(codec.encode("PredictionsLogged", record))
    assert err.value.reason == "malformed_body"
    assert f"PredictionsLogged.{field}:" in err.value.detail and rule in err.value.detail


def test_a_broken_compact_batch_is_dead_lettered_and_the_next_one_projected(tmp_path):
    codec, projector = Codec(), Projector()
    good = wire_form("PredictionsLogged", _first_form())
    bad = {**good, "envelope": {**good["envelope"], "event_id": "01890f5e-0000-7000-8004-999999999998"},
           "timestamp_values": b"\x00" * 9}
    store = ViewStore(tmp_path / "v.duckdb")
    try:
        stats, dead = store.apply(raw([codec.encode("PredictionsLogged", bad), codec.encode("PredictionsLogged", good)]),
                                  projector)
        assert stats.applied == 1 and len(dead) == 1
        assert dead[0].reason == "malformed_body" and "timestamp_values" in dead[0].detail
        assert [r[0] for r in store.con.execute("SELECT request_id FROM log_predictions ORDER BY 1").fetchall()] \
            == ["r1", "r2"]
    finally:
        store.close()


@pytest.fixture
def client(tmp_path):
    c = Client(Settings.load(env={}, home=tmp_path, principal="svc", linger_ms=5), emitter=MemoryEmitter())
    yield c
    c.close()


def _batches(client) -> list[tuple[dict, dict]]:
    """(as written, as read) for every PredictionsLogged batch published."""
    codec = Codec()
    return [(_as_written(data), codec.decode(data).record)
            for e, data in zip(client.emitter.events, client.emitter.encoded) if e.event_type == "PredictionsLogged"]


def test_the_monitor_writes_generated_ids_compact_and_given_ones_as_text(client):
    with Monitor("m", "prod", client=client, batch_rows=3) as m:
        generated = [m.log({"x": float(i)}, timestamp=1_760_000_000 + i) for i in range(3)]
        m.flush()
        mixed = [m.log({"x": 1.0}), m.log({"x": 2.0}, request_id="order-7"), m.log({"x": 3.0}, request_id=42)]
    (w1, r1), (w2, r2) = _batches(client)
    assert w1["request_ids"] == [] and w1["request_id_counters"] and w1["timestamps"] == []
    assert r1["request_ids"] == generated and len(set(generated)) == 3
    assert r1["timestamps"] == [(1_760_000_000 + i) * 1_000_000 for i in range(3)]
    assert w2["request_id_counters"] is None and w2["request_ids"] == mixed == [mixed[0], "order-7", "42"]
    assert w2["timestamp_values"] and len(r2["timestamps"]) == 3


def test_log_frame_writes_its_generated_ids_compact(client):
    frame = pd.DataFrame({"x": np.arange(5.0)})
    with Monitor("m", "prod", client=client, batch_rows=2) as m:
        ids = m.log_frame(frame, predictions=np.zeros(5))
        given = m.log_frame(frame, request_ids=[f"q{i}" for i in range(5)])
    batches = _batches(client)
    assert [len(r["request_ids"]) for _, r in batches] == [2, 2, 1] * 2
    assert all(w["request_id_counters"] for w, _ in batches[:3])
    assert all(w["request_id_counters"] is None for w, _ in batches[3:])
    assert [i for _, r in batches[:3] for i in r["request_ids"]] == ids
    assert [i for _, r in batches[3:] for i in r["request_ids"]] == given


def test_json_consumers_get_the_first_form():
    record = wire_form("PredictionsLogged", _first_form())
    listed = prediction_columns.to_lists(record)
    assert listed["request_ids"] == ["r1", "r2"] and listed["timestamps"] == [1_760_000_001_000_000,
                                                                             1_760_000_002_000_000]
    assert listed["request_id_counters"] is None and listed["timestamp_values"] is None
    assert record["request_ids"] == []  # the caller's record is left as it was
