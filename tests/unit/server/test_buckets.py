"""Bucketed metric histories on the REAL metrics view in a real DuckDB file, against a pure-Python reference:
a 10^5-point series keeps its one spike at 100 buckets; short runs come back point by point; zoom."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

import pytest

from factories import ENVIRONMENT, envelope
from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.store import ViewStore
from modelog.server.buckets import COLUMNS, history_query
from modelog.wire.codec import Codec
from modelog.wire.errors import ValidationError

T0 = 1_760_000_000_000_000
EPOCH = datetime(1970, 1, 1)
LONG, SHORT, ODD, TIMED = ("%032x" % i for i in (0xA1, 0xA2, 0xA3, 0xA4))
SPIKE_STEP = 54_321


def series() -> dict[str, list[tuple[int, int, float]]]:
    """run -> [(step, timestamp_us, value)] for metric 'loss'."""
    rnd = random.Random(5)
    long = [(s, T0 + s * 1000, 1.0 + 0.1 * math.sin(s / 500) + rnd.uniform(-0.01, 0.01)) for s in range(100_000)]
    long[SPIKE_STEP] = (SPIKE_STEP, T0 + SPIKE_STEP * 1000, 250.0)  # one spike
    long[70_001] = (70_001, T0 + 70_001 * 1000, math.nan)
    long[80_000] = (80_000, T0 + 80_000 * 1000, -math.inf)
    for s in range(90_000, 90_010):  # a bucket's worth of NaN ... partly
        long[s] = (s, T0 + s * 1000, math.nan)
    short = [(s * 10, T0 + s, rnd.random()) for s in range(50)] + [(500, T0 + 99, math.nan)]
    # negative and sparse steps, repeated steps (the later timestamp is the last value), unsorted arrival
    odd = [(s, T0 + 5000 + i, rnd.uniform(-5, 5)) for i, s in enumerate(range(-3000, 3000, 7))]
    odd += [(s, T0 + 10_000 + s, 42.0 + s) for s in range(-3000, 3000, 700)]  # same steps again, later
    rnd.shuffle(odd)
    timed = [(s, T0 + int(rnd.expovariate(1 / 1e6) * 1000) + s, rnd.random()) for s in range(3000)]
    return {LONG: long, SHORT: short, ODD: odd, TIMED: timed}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    data = series()
    store = ViewStore(tmp_path_factory.mktemp("buckets") / "views.duckdb")
    codec = Codec()
    recs, n = [], 0

    def env(t, run):
        nonlocal n
        n += 1
        return envelope(t, run, event_id=f"01890f5e-0000-7000-8010-{n:012d}", occurred_at=T0)

    for run, pts in data.items():
        recs.append(codec.encode("RunStarted", {"envelope": env("RunStarted", run), "run_id": run, "experiment": "e",
                                                "name": "r", "start_time": T0, "tags": {}, "environment": ENVIRONMENT}))
        for i in range(0, len(pts), 5000):
            points = [{"key": "loss", "value": v, "step": s, "timestamp": t} for s, t, v in pts[i:i + 5000]]
            points += [{"key": "other", "value": 1e9, "step": s, "timestamp": t} for s, t, _ in pts[i:i + 50]]
            recs.append(codec.encode("MetricsLogged", {"envelope": env("MetricsLogged", run), "run_id": run,
                                                       "points": points}))
    stats, dead = store.apply([RawRecord("t", 0, i, None, b"k", v) for i, v in enumerate(recs)], Projector())
    assert dead == []
    yield store.reader(), data
    store.close()


def run_query(con, *args, **kw) -> list[dict]:
    sql, params = history_query(*args, **kw)
    cur = con.execute(sql, params)
    assert tuple(d[0] for d in cur.description) == COLUMNS
    return [dict(zip(COLUMNS, row)) for row in cur.fetchall()]


def ts(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def reference(pts, max_points, x="step", min_step=None, max_step=None) -> list[dict]:
    """The same buckets computed in plain Python."""
    pts = [p for p in pts if (min_step is None or p[0] >= min_step) and (max_step is None or p[0] <= max_step)]
    if not pts:
        return []
    xv = (lambda p: p[0]) if x == "step" else (lambda p: p[1])
    order = (lambda p: (p[0], p[1])) if x == "step" else (lambda p: (p[1], p[0]))
    pts = sorted(pts, key=order)
    if len(pts) <= max_points:
        groups = [[p] for p in pts]
    else:
        lo, hi = min(map(xv, pts)), max(map(xv, pts))
        by: dict[int, list] = {}
        for p in pts:
            by.setdefault((xv(p) - lo) * max_points // (hi - lo + 1), []).append(p)
        groups = [by[b] for b in sorted(by)]
    out = []
    for i, g in enumerate(groups):
        finite = [v for _, _, v in g if not math.isnan(v)]
        out.append({"first_step": min(s for s, _, _ in g), "last_step": max(s for s, _, _ in g),
                    "first_time": ts(min(t for _, t, _ in g)), "last_time": ts(max(t for _, t, _ in g)),
                    "value": max(g, key=order)[2], "min_value": min(finite) if finite else None,
                    "max_value": max(finite) if finite else None, "points": len(g),
                    "nan_count": sum(math.isnan(v) for _, _, v in g)})
    return out


def same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def assert_matches(rows, ref):
    assert len(rows) == len(ref)
    for got, want in zip(rows, ref):
        for k, v in want.items():
            assert same(got[k], v), (k, got, want)


def test_the_spike_survives_a_hundred_buckets(world):
    con, data = world
    rows = run_query(con, [LONG], "loss", 100)
    assert len(rows) <= 100 and [r["bucket"] for r in rows] == sorted({r["bucket"] for r in rows})
    assert sum(r["points"] for r in rows) == 100_000
    spike = next(r for r in rows if r["first_step"] <= SPIKE_STEP <= r["last_step"])
    assert spike["max_value"] == 250.0
    assert max(r["max_value"] for r in rows) == 250.0
    assert min(r["min_value"] for r in rows) == -math.inf  # an infinite dip is kept too
    nan_bucket = next(r for r in rows if r["first_step"] <= 90_000 <= r["last_step"])
    assert nan_bucket["nan_count"] == 10 and not math.isnan(nan_bucket["max_value"])
    assert_matches(rows, reference(data[LONG], 100))


@pytest.mark.parametrize("max_points", [1, 2, 7, 100, 999, 10_000])
def test_buckets_equal_the_python_reference(world, max_points):
    con, data = world
    rows = run_query(con, [LONG, ODD], "loss", max_points)
    for run in (LONG, ODD):
        mine = [r for r in rows if r["run_id"] == run]
        assert 1 <= len(mine) <= max_points
        assert_matches(mine, reference(data[run], max_points))


def test_a_run_with_few_points_comes_back_point_by_point(world):
    con, data = world
    rows = run_query(con, [SHORT], "loss", 51)
    assert [r["bucket"] for r in rows] == list(range(51))
    pts = sorted(data[SHORT])
    assert [(r["first_step"], r["last_step"], r["points"]) for r in rows] == [(s, s, 1) for s, _, _ in pts]
    assert all(same(r["value"], v) for r, (_, _, v) in zip(rows, pts))
    assert rows[-1]["nan_count"] == 1 and rows[-1]["min_value"] is None and rows[-1]["max_value"] is None
    assert_matches(rows, reference(data[SHORT], 51))
    assert len(run_query(con, [SHORT], "loss", 50)) <= 50  # one point more than max_points: bucketed


def test_several_runs_at_once_each_over_its_own_range(world):
    con, data = world
    rows = run_query(con, [SHORT, LONG, ODD, TIMED, "no-such-run", LONG], "loss", 300)
    assert [r["run_id"] for r in rows] == sorted(r["run_id"] for r in rows)
    assert {r["run_id"] for r in rows} == {SHORT, LONG, ODD, TIMED}
    for run in (SHORT, LONG, ODD, TIMED):
        assert_matches([r for r in rows if r["run_id"] == run], reference(data[run], 300))
    assert run_query(con, [LONG], "no-such-key", 10) == []


def test_repeated_steps_take_the_later_point_as_last(world):
    con, data = world
    rows = run_query(con, [ODD], "loss", 10_000)  # every point, repeated steps are separate rows
    assert len(rows) == len(data[ODD])
    one = run_query(con, [ODD], "loss", 10, min_step=-3000, max_step=-3000)
    assert len(one) == 2  # two points logged at step -3000, fewer than max_points: both, in time order
    assert_matches(one, reference(data[ODD], 10, min_step=-3000, max_step=-3000))
    assert one[1]["value"] == 42.0 - 3000
    last = run_query(con, [ODD], "loss", 1, min_step=-3000, max_step=-3000)
    assert last[0]["points"] == 2 and last[0]["value"] == 42.0 - 3000  # the later timestamp wins


@pytest.mark.parametrize("lo,hi", [(54_000, 55_000), (SPIKE_STEP, SPIKE_STEP + 5), (None, 1234), (99_000, None),
                                   (200_000, 300_000)])
def test_zoom_fetches_finer_buckets(world, lo, hi):
    con, data = world
    rows = run_query(con, [LONG], "loss", 100, min_step=lo, max_step=hi)
    assert_matches(rows, reference(data[LONG], 100, min_step=lo, max_step=hi))
    assert all((lo is None or r["first_step"] >= lo) and (hi is None or r["last_step"] <= hi) for r in rows)
    if lo == 54_000:
        assert all(r["last_step"] - r["first_step"] < 11 for r in rows)  # ~10 steps a bucket, not 1000
        assert max(r["max_value"] for r in rows) == 250.0


def test_time_axis(world):
    con, data = world
    for run in (TIMED, LONG):
        rows = run_query(con, [run], "loss", 64, x="time")
        assert len(rows) <= 64
        assert_matches(rows, reference(data[run], 64, x="time"))


@pytest.mark.parametrize("kwargs,field", [
    ({"run_ids": []}, "run_id"), ({"run_ids": "abc"}, "run_id"), ({"run_ids": [1]}, "run_id"),
    ({"run_ids": ["r%d" % i for i in range(101)]}, "run_id"), ({"key": ""}, "key"), ({"key": None}, "key"),
    ({"max_points": 0}, "max_points"), ({"max_points": 10_001}, "max_points"), ({"max_points": 5.0}, "max_points"),
    ({"max_points": True}, "max_points"), ({"x": "wall"}, "x"), ({"min_step": "1"}, "min_step"),
    ({"min_step": 5, "max_step": 4}, "min_step"), ({"max_step": 2**63}, "max_step"),
])
def test_bad_arguments_are_refused(kwargs, field):
    args = {"run_ids": ["r"], "key": "loss", "max_points": 10, **kwargs}
    with pytest.raises(ValidationError) as e:
        history_query(**args)
    assert e.value.field == field


def test_nothing_the_caller_passes_reaches_the_sql_text():
    evil = "x'); DROP TABLE metrics; --"
    sql, params = history_query([evil, "r2"], evil, 77, min_step=-5, max_step=123456)
    assert evil not in sql and "77" not in sql and "123456" not in sql and "DROP" not in sql
    assert sql.count("?") == len(params) and params[:3] == [evil, evil, "r2"]
