"""Columnar metric batches (decision 0021): the same points give the same rows, whichever form carries them."""

import math
import random
from pathlib import Path

import pytest

from forms import projected_tables, raw, rows_of, views_by_form
from factories import METRIC_POINTS, envelope, metric_points_record, same, sample_records
from modelog.processors.projector import Projector
from modelog.processors.store import ViewStore
from modelog.sdk.tracking import metric_batches
from modelog.wire import metric_columns
from modelog.wire.codec import Codec

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
OLD_SAMPLE = "MetricsLogged.e17735fdf532bcaf.bin"  # released before columnar batches: points as records

TABLES = ("log_metrics", "log_metric_summaries", "cur_latest_metrics", "metrics", "latest_metrics")


def random_points(rng: random.Random) -> list[dict]:
    """A batch as a training job may log it: one to many keys, NaN and infinities, steps with gaps and
    repeats (even negative), timestamps out of order."""
    keys = [f"m/{i}" for i in range(rng.choice([1, 2, 20, 300]))]
    n = rng.randrange(1, 2000)
    special = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, 5e-324]
    return [{"key": rng.choice(keys),
             "value": rng.choice(special) if rng.random() < 0.2 else rng.uniform(-1e6, 1e6),
             "step": rng.choice([rng.randrange(0, 10**6), rng.randrange(-5, 5), 2**62]),
             "timestamp": 1_760_000_000_000_000 + rng.randrange(-10**9, 10**9)} for _ in range(n)]


def batch_events(seed: int, count: int) -> list[tuple[dict, dict]]:
    """``count`` random batches, each as (points form, columns form) with the same envelope."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        run = f"run-{i % 4}"
        env = envelope("MetricsLogged", run, event_id=f"01890f5e-0000-7000-8003-{seed:06d}{i:06d}")
        pts = random_points(rng)
        out.append(({"envelope": env, "run_id": run, "points": pts, "columns": None},
                    {"envelope": env, "run_id": run, "points": [], "columns": metric_columns.from_points(pts)}))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_projector_gives_the_same_rows_for_both_forms(seed):
    codec, projector = Codec(), Projector()
    for old, new in batch_events(seed, 8):
        tables = []
        for record in (old, new):
            tables.append(projected_tables("MetricsLogged", record, codec, projector))
        assert tables[0].keys() == tables[1].keys() == {"log_events", "log_metrics"}
        for t in tables[0]:
            a, b = tables[0][t], tables[1][t]
            assert a.schema == b.schema and a.num_rows == b.num_rows
            assert same(a.to_pylist(), b.to_pylist()), t  # row for row, in the order logged, NaN included


def test_the_views_are_the_same_for_both_forms_and_a_mix_of_them(tmp_path):
    codec, projector = Codec(), Projector()
    pairs = batch_events(7, 30)
    forms = {"points": [codec.encode("MetricsLogged", old) for old, _ in pairs],
             "columns": [codec.encode("MetricsLogged", new) for _, new in pairs],
             "mixed": [codec.encode("MetricsLogged", pair[i % 2]) for i, pair in enumerate(pairs)]}
    got = views_by_form(tmp_path, forms, TABLES, 7, projector)
    assert sum(len(p[0]["points"]) for p in pairs) == len(got["points"]["log_metrics"])
    for t in TABLES:
        assert got["columns"][t] == got["points"][t], t
        assert got["mixed"][t] == got["points"][t], t


def test_a_released_per_point_sample_and_a_columnar_one_project_the_same_points(tmp_path):
    """The event released before columnar batches still decodes, and gives the rows its columnar twin gives."""
    codec, projector = Codec(), Projector()
    old = (SAMPLES / OLD_SAMPLE).read_bytes()
    assert codec.decode(old).record["columns"] is None
    columnar = sorted(p for p in SAMPLES.glob("MetricsLogged.*.bin") if codec.decode(p.read_bytes()).record["columns"])
    assert columnar, "no released sample of a columnar MetricsLogged"
    got = []
    for value in (old, columnar[-1].read_bytes()):
        store = ViewStore(tmp_path / f"{len(got)}.duckdb")
        try:
            assert store.apply(raw([value]), projector)[0].applied == 1
            got.append({t: rows_of(store, t, ("event_id",)) for t in TABLES})  # the samples' ids differ
        finally:
            store.close()
    assert got[0] == got[1]
    assert len(got[0]["log_metrics"]) == len(METRIC_POINTS)


def test_the_sdk_batches_hold_the_points_in_the_order_logged():
    rng = random.Random(11)
    names = [f"k{i}" for i in range(100)]
    chunks, expected = [], []
    for call in range(3000):
        keys = tuple(rng.sample(names, rng.choice([1, 3, 20])))
        values = [rng.choice([math.nan, rng.random(), math.inf]) for _ in keys]
        step, ts = rng.randrange(-3, 10**9), 1_760_000_000_000_000 + call
        chunks.append((keys, values, step, ts))
        expected += [{"key": k, "value": v, "step": step, "timestamp": ts} for k, v in zip(keys, values)]
    batches = metric_batches(chunks, len(expected))
    assert all(0 < len(metric_columns.decode(b).values) <= 5000 for b in batches)
    got = [p for b in batches for p in metric_columns.points({"columns": b})]
    assert same(got, expected)


def test_the_sample_records_differ_only_in_form():
    assert same(metric_columns.points(sample_records()["MetricsLogged"]), metric_points_record()["points"])
