"""Columnar prediction batches (decision 0025): the same predictions give the same rows and the same drift
windows, whichever form (lists or buffers) carries them; released list-form events still decode and project."""

import math
import random
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forms import projected_tables, raw, rows_of, views_by_form
from factories import PREDICTION_LIST_COLUMNS, SEALED_SAMPLE, envelope, monitoring_records, same
from modelog.drift.profile import profile_frame
from modelog.processors.drift_app import DriftState
from modelog.processors.projector import Projector
from modelog.processors.store import ViewStore
from modelog.sdk.monitoring import predictions_payload
from modelog.wire import prediction_columns, rulecheck
from modelog.wire.codec import Codec
from modelog.wire.errors import ValidationError

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
OLD_SAMPLE = "PredictionsLogged.8a7037fa22dae646.bin"  # released before buffer columns: lists
TABLES = ("log_predictions", "log_prediction_batches", "predictions", "prediction_rates")
NAN, INF = math.nan, math.inf


def _value(rng: random.Random, kind: str):
    if kind != "none" and rng.random() < 0.15:
        return None
    if kind == "float":
        return rng.choice([NAN, INF, -INF, -0.0, 1e308, 5e-324]) if rng.random() < 0.2 else rng.uniform(-1e6, 1e6)
    if kind == "int":
        return rng.choice([rng.randrange(-10**12, 10**12), 2**70, 0])
    if kind == "numpy":
        return rng.choice([np.float32(rng.random()), np.int64(rng.randrange(-99, 99)), np.float64(NAN)])
    if kind == "text":
        return rng.choice(["Lyon", "Oslo", "", "é🙂", "a" * 300])
    if kind == "mixed":
        return rng.choice([1.5, 7, "Lyon", True])
    if kind == "bool":
        return rng.choice([True, False, np.bool_(True)])
    # what Arrow refuses or reads as neither numbers nor text (value by value), or as numbers of another width
    if kind == "decimal":
        return Decimal(rng.choice(["1.5", "-0.25", "1e30"]))
    if kind == "half":
        return np.float16(rng.choice([0.5, 65504, -2.0]))
    if kind == "exotic":
        return rng.choice([Decimal("1.5"), Fraction(1, 3), np.float16(0.5), 2**63, pd.NA, b"x", rng.uniform(0, 1)])
    return None


def random_items(rng: random.Random, n: int) -> list[tuple]:
    """Requests as a service logs them: numbers, numpy scalars, text, bools, mixes, missing values, features
    some requests lack, keys in another order; a prediction and a score or not."""
    kinds = [rng.choice(["float", "int", "numpy", "text", "mixed", "bool", "none", "decimal", "half",
                                   "exotic"]) for _ in range(rng.randrange(0, 9))]
    sparse = rng.random() < 0.3
    pred_kind = rng.choice(["absent", "float", "text", "mixed"])
    score_kind = rng.choice(["absent", "float"])
    items = []
    for i in range(n):
        feats = {f"f{j}": _value(rng, k) for j, k in enumerate(kinds) if not (sparse and rng.random() < 0.2)}
        if rng.random() < 0.1:  # another key order
            feats = dict(reversed(list(feats.items())))
        pred = None if pred_kind == "absent" else _value(rng, pred_kind)
        score = None if score_kind == "absent" else _value(rng, score_kind)
        items.append((f"r{i}", 1_760_000_000_000_000 + rng.randrange(-10**9, 10**9), feats, pred, score))
    return items


def batch_events(seed: int, count: int) -> list[tuple[dict, dict]]:
    """``count`` random batches, each as (list form, buffer form) with the same envelope."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        env = envelope("PredictionsLogged", "monitor:m", entity_type="monitor",
                       event_id=f"01890f5e-0000-7000-8004-{seed:06d}{i:06d}")
        items = random_items(rng, rng.randrange(1, 400))
        version = rng.choice([None, 3])
        pair = tuple({"envelope": env, **predictions_payload("m", "prod", version, items, dropped=i % 3, buffers=b)}
                     for b in (False, True))
        assert not any(prediction_columns.is_buffer(c) for c in pair[0]["columns"])
        out.append(pair)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_projector_gives_the_same_rows_for_both_forms(seed):
    codec, projector = Codec(), Projector()
    for old, new in batch_events(seed, 12):
        tables = []
        for record in (old, new):
            tables.append(projected_tables("PredictionsLogged", record, codec, projector))
        assert tables[0].keys() == tables[1].keys()
        for t in tables[0]:
            a, b = tables[0][t], tables[1][t]
            assert a.schema == b.schema and a.num_rows == b.num_rows
            assert repr(a.to_pylist()) == repr(b.to_pylist()), t  # row for row: NaN, -0.0, nulls, map entries


def test_the_views_are_the_same_for_both_forms_and_a_mix_of_them(tmp_path):
    codec, projector = Codec(), Projector()
    pairs = batch_events(7, 20)
    forms = {"lists": [codec.encode("PredictionsLogged", old) for old, _ in pairs],
             "buffers": [codec.encode("PredictionsLogged", new) for _, new in pairs],
             "mixed": [codec.encode("PredictionsLogged", pair[i % 2]) for i, pair in enumerate(pairs)]}
    got = views_by_form(tmp_path, forms, TABLES, 6, projector)
    assert sum(len(p[0]["request_ids"]) for p in pairs) == len(got["lists"]["log_predictions"])
    for t in TABLES:
        assert got["buffers"][t] == got["lists"][t], t
        assert got["mixed"][t] == got["lists"][t], t


def test_a_released_list_sample_and_a_buffer_one_project_the_same_rows(tmp_path):
    codec, projector = Codec(), Projector()
    old = (SAMPLES / OLD_SAMPLE).read_bytes()
    assert not any(prediction_columns.is_buffer(c) for c in codec.decode(old).record["columns"])
    record = monitoring_records()["PredictionsLogged"]
    # the old sample predates sealed columns (decision 0018): compare the columns both forms can hold
    record["columns"] = [c for c in record["columns"] if not c.get("sealed")]
    new = codec.encode("PredictionsLogged", record)
    assert all(prediction_columns.is_buffer(c) for c in codec.decode(new).record["columns"])
    got = []
    for value in (old, new):
        store = ViewStore(tmp_path / f"{len(got)}.duckdb")
        try:
            assert store.apply(raw([value]), projector)[0].applied == 1
            got.append({t: rows_of(store, t) for t in TABLES})
        finally:
            store.close()
    assert got[0] == got[1]
    assert len(got[0]["log_predictions"]) == 2


def test_the_sample_records_differ_only_in_form():
    record = monitoring_records()["PredictionsLogged"]
    columns = prediction_columns.to_lists(record)["columns"]
    assert same(columns[:-1], PREDICTION_LIST_COLUMNS)
    assert columns[-1]["sealed"] == {"kind": "TEXT", "values": [SEALED_SAMPLE, None]}  # to_lists keeps it


def _window_values(closed: dict) -> dict:
    """A closed window's columns as plain lists, missing (None or NaN) as None."""
    out = {}
    for name, c in closed["columns"].items():
        values = c["values"].tolist() if isinstance(c["values"], np.ndarray) else list(c["values"])
        out[name] = (c["role"], [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values])
    return out


@pytest.mark.parametrize("seed", [4, 5])
def test_the_drift_processor_windows_both_forms_alike(seed):
    codec = Codec()
    states = [DriftState({}, {}, {}, {}, {}, {}) for _ in range(2)]
    rng = random.Random(seed)
    rows = rng.choice([7, 100, 250])
    for st in states:
        st.configs["m"] = {"window_rows": rows}
    closed = [[], []]
    for offset, pair in enumerate(batch_events(seed, 10)):
        for side, record in enumerate(pair):
            decoded = codec.decode(codec.encode("PredictionsLogged", record)).record
            closed[side] += states[side].add_predictions(decoded, offset)
    assert len(closed[0]) == len(closed[1]) > 0
    for a, b in zip(*closed):
        assert {k: v for k, v in a.items() if k != "columns"} == {k: v for k, v in b.items() if k != "columns"}
        assert _window_values(a) == _window_values(b)


def test_drift_measures_are_the_same_for_both_forms():
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(size=20_000), "k": rng.integers(0, 4, 20_000).astype(float),
                        "city": rng.choice(["Lyon", "Oslo", "Rome"], 20_000)})
    cur = pd.DataFrame({"x": rng.normal(0.4, 1, 600), "k": rng.integers(0, 5, 600).astype(float),
                        "city": rng.choice(["Lyon", "Oslo", "Nice"], 600)})
    cur.loc[::17, "x"] = np.nan
    items = [(f"r{i}", 1_760_000_000_000_000 + i, {k: (None if isinstance(v, float) and math.isnan(v) else v)
                                                    for k, v in row.items()}, None, None)
             for i, row in enumerate(cur.to_dict(orient="records"))]
    codec = Codec()
    measured = []
    for buffers in (False, True):
        st = DriftState({}, {}, {}, {}, {}, {})
        st.add_reference({"model": "m", "version": None, "columns": profile_frame(ref)})
        st.configs["m"] = {"window_rows": 200}
        record = {"envelope": envelope("PredictionsLogged", "monitor:m", entity_type="monitor"),
                  **predictions_payload("m", "prod", None, items, buffers=buffers)}
        closed = st.add_predictions(codec.decode(codec.encode("PredictionsLogged", record)).record, 0)
        measured.append([st.measure(c)[0] for c in closed])
    assert len(measured[0]) == 3
    assert same(measured[0], measured[1])
    assert any(c["drift"] for c in measured[1][0]["columns"] if c["column"] == "x")  # the 0.4 shift is seen


@pytest.mark.parametrize("break_it, field", [
    (lambda c: c[0].update(values=c[0]["values"][:-8]), "columns.0.values"),
    (lambda c: c[0].update(valid=b"\x01\x02\x03"), "columns.0.valid"),
    (lambda c: c[1].update(codes=np.array([0, 5], "<i4").tobytes()), "columns.1.codes"),
    (lambda c: c[1].update(codes=np.array([0, -2], "<i4").tobytes()), "columns.1.codes"),
    (lambda c: c[1].update(dictionary=["Lyon", "Lyon"]), "columns.1.dictionary"),
    (lambda c: c[1].update(strings=["x", "y"]), "columns.1.numbers"),
    (lambda c: c[0].update(codes=np.array([0, 0], "<i4").tobytes()), "columns.0.codes"),
    (lambda c: c.append({"name": "z", "role": "FEATURE", "numbers": [1.0], "strings": []}), "columns.5.numbers"),
])
def test_a_broken_buffer_batch_is_refused_naming_the_part(break_it, field):
    record = monitoring_records()["PredictionsLogged"]
    rulecheck.check("PredictionsLogged", record)  # the sample is valid
    break_it(record["columns"])
    with pytest.raises(ValidationError) as err:
        rulecheck.check("PredictionsLogged", record)
    assert err.value.field == f"PredictionsLogged.{field}"


def test_a_broken_buffer_batch_is_dead_lettered_with_the_reason(tmp_path):
    codec, projector = Codec(), Projector()
    good = monitoring_records()["PredictionsLogged"]
    bad = {**good, "envelope": {**good["envelope"], "event_id": "01890f5e-0000-7000-8004-999999999999"},
           "columns": [{**good["columns"][0], "values": b"\x00" * 7}]}
    store = ViewStore(tmp_path / "v.duckdb")
    try:
        stats, dead = store.apply(raw([codec.encode("PredictionsLogged", bad), codec.encode("PredictionsLogged", good)]),
                                  projector)
        assert stats.applied == 1 and len(dead) == 1
        assert dead[0].reason == "invalid_event" and "columns.0.values" in dead[0].detail
        assert len(rows_of(store, "log_predictions")) == 2
    finally:
        store.close()
