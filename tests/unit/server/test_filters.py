"""The run filter language against the REAL views in a real DuckDB file: every filter selects exactly what a
plain-Python reading of the same runs selects; paging visits every run once, in the unpaged order; garbage
and injection attempts either fail with FilterError or compile to SQL made only of the module's fragments."""

from __future__ import annotations

import math
import random
import re
from datetime import datetime, timedelta

import pytest

from factories import ENVIRONMENT, envelope
from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.store import ViewStore
from modelog.server import filters as F
from modelog.server.filters import FilterError, compile_filter, compile_order, runs_query
from modelog.wire.codec import Codec

BASE_US = 1_760_000_000_000_000
BASE = datetime(1970, 1, 1) + timedelta(microseconds=BASE_US)
N_RUNS = 50


# -- the data: 50 runs with params, metrics, tags; the same runs as plain Python dicts ------------

def make_runs(seed: int = 7) -> list[dict]:
    rnd = random.Random(seed)
    runs = []
    for i in range(N_RUNS):
        start_us = BASE_US + rnd.choice([0, 1, 2, 3]) * 60_000_000 + (i % 5) * 1_000_000  # ties on purpose
        status = rnd.choice(["RUNNING", "FINISHED", "FINISHED", "FAILED", "KILLED"])
        end_us = None if status == "RUNNING" else start_us + rnd.randrange(1, 400) * 1_000_000 + 500_000
        params = {}
        if rnd.random() < 0.85:
            params["lr"] = rnd.choice(["0.1", "0.01", "0.001", "1e-4", "0.05"])
        params["model"] = rnd.choice(["gbt", "rf", "linear", "O'Reilly", "Ünïcode"])
        params["depth"] = str(rnd.randrange(1, 12))
        if rnd.random() < 0.5:
            params["lr.decay"] = rnd.choice(["0.9", "0.99", "0.5"])
        if rnd.random() < 0.6:
            params["mixed"] = rnd.choice(["10", "9", "2.5", "abc", "nan", "Zed", "-3"])
        metrics = {}  # key -> list of (step, value)
        if rnd.random() < 0.8:
            auc = [(s, round(rnd.random(), 3)) for s in range(rnd.randrange(1, 5))]
            if i % 17 == 3:
                auc.append((99, math.nan))
            if i % 23 == 5:
                auc.append((99, math.inf))
            metrics["auc"] = auc
        metrics["loss"] = [(s, round(rnd.uniform(0, 2), 3)) for s in range(3)]
        if rnd.random() < 0.5:
            metrics["val-loss"] = [(0, round(rnd.uniform(0, 2), 3))]
        tags = {}
        if rnd.random() < 0.7:
            tags["team"] = rnd.choice(["risk", "growth", "Risk"])
        if rnd.random() < 0.5:
            tags["release.candidate"] = rnd.choice(["yes", "no"])
        if rnd.random() < 0.3:
            tags["owner name"] = rnd.choice(["ann", "bo_b", "100%"])
        runs.append({
            "run_id": f"{0x0190f5e0aa00 + i:032x}",
            "experiment": rnd.choice(["exp-a", "exp-b", "exp c"]),
            "name": rnd.choice(["baseline", "base_2", "gbt-v1", "rf 100", "b.x/y:z"]) + f"-{i}",
            "status": status,
            "start_us": start_us, "end_us": end_us,
            "start_time": BASE + timedelta(microseconds=start_us - BASE_US),
            "end_time": None if end_us is None else BASE + timedelta(microseconds=end_us - BASE_US),
            "duration_s": None if end_us is None else end_us / 1e6 - start_us / 1e6,
            "actor": rnd.choice(["alice", "bob", "carol"]),
            "params": params, "metric_points": metrics,
            "metrics": {k: v[-1][1] for k, v in metrics.items()},
            "tags": tags,
        })
    return runs


def events(runs: list[dict]) -> list[tuple[str, dict]]:
    out = []
    n = [0]

    def env(t: str, run: dict, at: int) -> dict:
        n[0] += 1
        e = envelope(t, run["run_id"], event_id=f"01890f5e-0000-7000-8009-{n[0]:012d}", occurred_at=at)
        e["actor"] = {"principal": run["actor"], "kind": "USER"}
        return e

    for r in runs:
        start = r["start_us"]
        out.append(("RunStarted", {"envelope": env("RunStarted", r, start), "run_id": r["run_id"],
                                   "experiment": r["experiment"], "name": r["name"], "start_time": start,
                                   "tags": {}, "environment": ENVIRONMENT}))
        out.append(("ParamsLogged", {"envelope": env("ParamsLogged", r, start + 1), "run_id": r["run_id"],
                                     "params": [{"key": k, "value": v, "value_type": "str"}
                                                for k, v in r["params"].items()]}))
        points = [{"key": k, "value": v, "step": s, "timestamp": start + 10 + s}
                  for k, pts in r["metric_points"].items() for s, v in pts]
        out.append(("MetricsLogged", {"envelope": env("MetricsLogged", r, start + 2), "run_id": r["run_id"],
                                      "points": points}))
        if r["tags"]:
            out.append(("TagsSet", {"envelope": env("TagsSet", r, start + 3), "run_id": r["run_id"],
                                    "tags": r["tags"]}))
        if r["end_us"] is not None:
            out.append(("RunEnded", {"envelope": env("RunEnded", r, r["end_us"]), "run_id": r["run_id"],
                                     "status": r["status"], "end_time": r["end_us"], "error": None}))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    runs = make_runs()
    store = ViewStore(tmp_path_factory.mktemp("filters") / "views.duckdb")
    codec = Codec()
    encoded = [codec.encode(t, r) for t, r in events(runs)]
    stats, dead = store.apply([RawRecord("t", 0, i, None, b"k", v) for i, v in enumerate(encoded)], Projector())
    assert dead == [] and stats.applied == len(encoded)
    yield store.reader(), runs
    store.close()


def select(con, filter_text, experiment=None, order_by=None, limit=1000, page_token=None):
    sql, params = runs_query(experiment, filter_text, order_by, limit, page_token)
    cur = con.execute(sql, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row)) for row in cur.fetchall()]


def test_the_views_hold_the_runs_as_python_sees_them(world):
    con, runs = world
    rows = {r["run_id"]: r for r in select(con, None)}
    assert len(rows) == N_RUNS
    for r in runs:
        row = rows[r["run_id"]]
        assert (row["name"], row["status"], row["actor"], row["start_time"]) == (
            r["name"], r["status"], r["actor"], r["start_time"])
    latest = dict(((a, b), c) for a, b, c in con.execute("SELECT run_id, key, value FROM latest_metrics").fetchall())
    for r in runs:
        for k, v in r["metrics"].items():
            got = latest[(r["run_id"], k)]
            assert got == v or (math.isnan(got) and math.isnan(v))


# -- a plain-Python reading, with SQL's three-valued logic (None = unknown) ---------------------

def num(text):
    """A param's text as a number, as TRY_CAST(... AS DOUBLE) reads it (NaN counts as missing)."""
    if text is None:
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return None if math.isnan(v) else v


def metric(r, k):
    v = r["metrics"].get(k)
    return None if v is None or math.isnan(v) else v


def c(a, op, b):
    if a is None or b is None:
        return None
    return {"=": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def AND(*xs):
    return False if any(x is False for x in xs) else None if any(x is None for x in xs) else True


def OR(*xs):
    return True if any(x is True for x in xs) else None if any(x is None for x in xs) else False


def NOT(x):
    return None if x is None else not x


def IN(a, values):
    return None if a is None else a in values


def like(a, pattern, insensitive=False):
    if a is None:
        return None
    rx = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.fullmatch(rx, a, re.S | (re.I if insensitive else 0)) is not None


T = datetime.fromisoformat
P = lambda r, k: r["params"].get(k)  # noqa: E731
TAG = lambda r, k: r["tags"].get(k)  # noqa: E731

CASES = [
    ("metrics.auc > 0.5", lambda r: c(metric(r, "auc"), ">", 0.5)),
    ("NOT (metrics.auc > 0.5)", lambda r: NOT(c(metric(r, "auc"), ">", 0.5))),
    ("metrics.auc <= 0.5 OR metrics.auc IS NULL", lambda r: OR(c(metric(r, "auc"), "<=", 0.5), metric(r, "auc") is None)),
    ("metrics.auc >= 1e0", lambda r: c(metric(r, "auc"), ">=", 1.0)),
    ("metrics.auc != 0.5", lambda r: c(metric(r, "auc"), "!=", 0.5)),
    ("metrics.auc IS NOT NULL", lambda r: metric(r, "auc") is not None),
    ("metrics.loss < 1 AND metrics.auc > .3", lambda r: AND(c(metric(r, "loss"), "<", 1), c(metric(r, "auc"), ">", .3))),
    ("metrics.`val-loss` < 1", lambda r: c(metric(r, "val-loss"), "<", 1)),
    ('metrics."val-loss" >= 1 or metrics.loss > 1.5', lambda r: OR(c(metric(r, "val-loss"), ">=", 1),
                                                                   c(metric(r, "loss"), ">", 1.5))),
    ("metrics.nope > -1", lambda r: None),
    ("metrics.auc IN (0.5, 1, -2)", lambda r: IN(metric(r, "auc"), [0.5, 1, -2])),
    ("params.lr = 0.01", lambda r: c(num(P(r, "lr")), "=", 0.01)),
    ("params.lr = '0.01'", lambda r: c(P(r, "lr"), "=", "0.01")),
    ("params.lr < 1e-2", lambda r: c(num(P(r, "lr")), "<", 0.01)),
    ("params.lr <> 0.1", lambda r: c(num(P(r, "lr")), "!=", 0.1)),
    ("params.depth >= 6 AND params.depth < 9", lambda r: AND(c(num(P(r, "depth")), ">=", 6), c(num(P(r, "depth")), "<", 9))),
    ("params.depth > '6'", lambda r: c(P(r, "depth"), ">", "6")),  # text comparison, deliberately
    ("params.model IN ('gbt', 'rf')", lambda r: IN(P(r, "model"), ["gbt", "rf"])),
    ("params.model NOT IN ('gbt', 'rf')", lambda r: NOT(IN(P(r, "model"), ["gbt", "rf"]))),
    ("params.model = 'O''Reilly'", lambda r: c(P(r, "model"), "=", "O'Reilly")),
    ('params.model = "O\'Reilly"', lambda r: c(P(r, "model"), "=", "O'Reilly")),
    ('params."lr.decay" = 0.9', lambda r: c(num(P(r, "lr.decay")), "=", 0.9)),
    ("params.lr.decay > 0.6", lambda r: c(num(P(r, "lr.decay")), ">", 0.6)),
    ("params.mixed > 3", lambda r: c(num(P(r, "mixed")), ">", 3)),
    ("params.mixed IN (9, 10)", lambda r: IN(num(P(r, "mixed")), [9, 10])),
    ("params.mixed > 'Z'", lambda r: c(P(r, "mixed"), ">", "Z")),
    ("params.mixed IS NULL", lambda r: P(r, "mixed") is None),
    ("params.mixed LIKE '%a%'", lambda r: like(P(r, "mixed"), "%a%")),
    ("tags.team = 'risk'", lambda r: c(TAG(r, "team"), "=", "risk")),
    ("tags.team ILIKE 'RISK'", lambda r: like(TAG(r, "team"), "RISK", True)),
    ("tags.team != 'risk'", lambda r: c(TAG(r, "team"), "!=", "risk")),
    ("NOT tags.team = 'risk'", lambda r: NOT(c(TAG(r, "team"), "=", "risk"))),
    ("tags.team IS NULL OR tags.team <> 'risk'", lambda r: OR(TAG(r, "team") is None, c(TAG(r, "team"), "!=", "risk"))),
    ("tags.`release.candidate` = 'yes'", lambda r: c(TAG(r, "release.candidate"), "=", "yes")),
    ('tags."owner name" LIKE \'100\\%\'', lambda r: c(TAG(r, "owner name"), "=", "100%")),
    ('tags."owner name" LIKE \'b_\\_%\'',  # b, any one character, a literal _, anything
     lambda r: None if TAG(r, "owner name") is None else re.fullmatch(r"b._.*", TAG(r, "owner name")) is not None),
    ("status = 'FINISHED'", lambda r: r["status"] == "FINISHED"),
    ("status IN ('FAILED', 'KILLED') OR name LIKE 'base%'",
     lambda r: OR(r["status"] in ("FAILED", "KILLED"), like(r["name"], "base%"))),
    ("name NOT LIKE '%-1%'", lambda r: NOT(like(r["name"], "%-1%"))),
    ("params.model LIKE 'Ün%'", lambda r: like(P(r, "model"), "Ün%")),
    ("name = 'rf 100-4' OR name LIKE 'b.x/y:z%'", lambda r: r["name"] == "rf 100-4" or r["name"].startswith("b.x/y:z")),
    ("actor = 'bob' AND NOT status = 'RUNNING'", lambda r: AND(r["actor"] == "bob", NOT(r["status"] == "RUNNING"))),
    ("experiment = 'exp c'", lambda r: r["experiment"] == "exp c"),
    ("run_id IN ('%032x', '%032x')" % (0x0190f5e0aa00 + 3, 0x0190f5e0aa00 + 7),
     lambda r: r["run_id"] in ("%032x" % (0x0190f5e0aa00 + 3), "%032x" % (0x0190f5e0aa00 + 7))),
    (f"start_time > '{(BASE + timedelta(seconds=90)).isoformat()}'", lambda r: r["start_time"] > BASE + timedelta(seconds=90)),
    (f"start_time >= '{(BASE + timedelta(seconds=120)).isoformat()}Z'", lambda r: r["start_time"] >= BASE + timedelta(seconds=120)),
    (f"start_time < '{(BASE + timedelta(seconds=7262)).isoformat()}+02:00'",
     lambda r: r["start_time"] < BASE + timedelta(seconds=62)),
    (f"end_time <= '{(BASE + timedelta(seconds=200)).isoformat()}'",
     lambda r: c(r["end_time"], "<=", BASE + timedelta(seconds=200))),
    ("duration_s > 100.25", lambda r: c(r["duration_s"], ">", 100.25)),
    ("duration_s IS NULL", lambda r: r["duration_s"] is None),
    # precedence: NOT > AND > OR; parentheses
    ("tags.team = 'risk' OR metrics.auc > 0.5 AND params.model = 'gbt'",
     lambda r: OR(c(TAG(r, "team"), "=", "risk"), AND(c(metric(r, "auc"), ">", .5), c(P(r, "model"), "=", "gbt")))),
    ("(tags.team = 'risk' OR metrics.auc > 0.5) AND params.model = 'gbt'",
     lambda r: AND(OR(c(TAG(r, "team"), "=", "risk"), c(metric(r, "auc"), ">", .5)), c(P(r, "model"), "=", "gbt"))),
    ("NOT tags.team = 'risk' AND NOT metrics.auc > 0.5",
     lambda r: AND(NOT(c(TAG(r, "team"), "=", "risk")), NOT(c(metric(r, "auc"), ">", .5)))),
    ("NOT (tags.team = 'risk' OR metrics.auc > 0.5)",
     lambda r: NOT(OR(c(TAG(r, "team"), "=", "risk"), c(metric(r, "auc"), ">", .5)))),
    ("not not ((status = 'FINISHED')) and (params.depth < 4 or (params.depth > 8 and actor = 'alice'))",
     lambda r: AND(r["status"] == "FINISHED", OR(c(num(P(r, "depth")), "<", 4),
                                                 AND(c(num(P(r, "depth")), ">", 8), r["actor"] == "alice")))),
    ("attributes.status = 'KILLED' or param.model = 'rf' or metric.loss > 1.9 or tag.team = 'growth'",
     lambda r: OR(r["status"] == "KILLED", c(P(r, "model"), "=", "rf"), c(metric(r, "loss"), ">", 1.9),
                  c(TAG(r, "team"), "=", "growth"))),
    ("", lambda r: True),
    ("   ", lambda r: True),
]


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0][:60] for c in CASES])
def test_a_filter_selects_what_python_selects(world, text, expected):
    con, runs = world
    got = {row["run_id"] for row in select(con, text)}
    want = {r["run_id"] for r in runs if expected(r) is True}
    assert got == want


def test_the_cases_are_not_trivial(world):
    """Most cases select some runs but not all (a filter test that selects nothing proves little)."""
    _, runs = world
    trivial = {t: sum(f(r) is True for r in runs) for t, f in CASES}
    trivial = {t: n for t, n in trivial.items() if not 0 < n < len(runs)}
    # the only ones on purpose: an unknown metric, values no run has, and the empty filter (every run)
    assert trivial == {"metrics.nope > -1": 0, "metrics.auc IN (0.5, 1, -2)": 0, "": len(runs), "   ": len(runs)}


def test_experiment_narrows_and_combines_with_the_filter(world):
    con, runs = world
    got = {row["run_id"] for row in select(con, "metrics.auc > 0.3", experiment="exp-b")}
    assert got == {r["run_id"] for r in runs if r["experiment"] == "exp-b" and c(metric(r, "auc"), ">", 0.3)}
    assert select(con, None, experiment="no such") == []


# -- ordering and paging -------------------------------------------------------------------------

ORDERS = [None, "metrics.auc DESC", "metrics.auc", "params.lr", "params.mixed DESC, name",
          "tags.team, metrics.auc DESC, start_time", "status, duration_s DESC", "run_id DESC",
          "start_time ASC", "end_time desc, actor"]


def page_through(con, filter_text, order_by, limit):
    rows, token, pages = [], None, 0
    while True:
        page = select(con, filter_text, order_by=order_by, limit=limit, page_token=token)
        pages += 1
        assert pages <= N_RUNS + 2
        rows.extend(page)
        if len(page) < limit:
            return rows
        token = F.next_page_token(page[-1], order_by)


@pytest.mark.parametrize("order_by", ORDERS)
@pytest.mark.parametrize("filter_text", [None, "metrics.auc > 0.4 OR tags.team = 'risk'"])
def test_paging_returns_every_run_once_in_the_unpaged_order(world, order_by, filter_text):
    con, runs = world
    whole = [r["run_id"] for r in select(con, filter_text, order_by=order_by)]
    assert len(whole) == len(set(whole))
    for limit in (3, 11):
        assert [r["run_id"] for r in page_through(con, filter_text, order_by, limit)] == whole


@pytest.mark.parametrize("order_by", ["tags.team DESC, metrics.auc, start_time DESC", "params.mixed"])
def test_paging_one_row_at_a_time(world, order_by):
    con, _ = world
    whole = [r["run_id"] for r in select(con, None, order_by=order_by)]
    assert [r["run_id"] for r in page_through(con, None, order_by, 1)] == whole


def nulls_last(value, descending):
    """A Python sort key for one SQL sort column: NULLs after everything, either direction."""
    if value is None:
        return (1, 0)
    return (0, -value if descending and not isinstance(value, str) else value)


def test_orders_match_python_sorting(world):
    con, runs = world
    by_auc = sorted(runs, key=lambda r: (nulls_last(metric(r, "auc"), True), r["run_id"]))
    assert [r["run_id"] for r in select(con, None, order_by="metrics.auc DESC")] == [r["run_id"] for r in by_auc]
    default = sorted(runs, key=lambda r: (-r["start_us"], r["run_id"]))
    assert [r["run_id"] for r in select(con, None)] == [r["run_id"] for r in default]
    # params sort numerically first, then the text that is not a number, then runs without the param
    def mixed(r):
        v = P(r, "mixed")
        return (nulls_last(num(v), False), nulls_last(v if num(v) is None else None, False), r["run_id"])
    assert [r["run_id"] for r in select(con, None, order_by="params.mixed")] == [r["run_id"] for r in sorted(runs, key=mixed)]


def test_compile_order_is_an_order_by_fragment(world):
    con, runs = world
    sql, params, keys = compile_order("metrics.auc DESC, start_time")
    assert [k.label for k in keys] == ["metrics.auc DESC", "start_time ASC", "run_id ASC"]
    got = [r for (r,) in con.execute(f"SELECT r.run_id FROM runs r ORDER BY {sql}", params).fetchall()]
    assert got == [r["run_id"] for r in select(con, None, order_by="metrics.auc DESC, start_time")]
    assert [k.label for k in compile_order(None)[2]] == ["start_time DESC", "run_id ASC"]
    assert [k.label for k in compile_order("run_id DESC, name")[2]] == ["run_id DESC", "name ASC"]


@pytest.mark.parametrize("bad,where", [
    ("metrics.auc DESC DESC", 17), ("metrics.auc,", 12), ("auc", 0), ("metrics.auc DESC, (", 18),
    ("metrics.auc > 1", 12), (", ".join(["name"] * 11), 60),
])
def test_bad_order_by_names_the_place(bad, where):
    with pytest.raises(FilterError) as e:
        compile_order(bad)
    assert e.value.position == where and str(e.value).startswith("order_by: ")


def test_page_tokens_are_checked():
    token = F.encode_page_token([0.5, BASE, "abc"], "metrics.auc DESC, start_time")
    assert F.decode_page_token(token, "metrics.auc DESC, start_time") == [0.5, BASE.isoformat(sep=" "), "abc"]
    for bad in ["", "!!!", "bm90IGpzb24", token[:-3], token + "AA", "e30", F.encode_page_token(["x"], None)]:
        with pytest.raises(FilterError, match="page_token"):
            F.decode_page_token(bad, "metrics.auc DESC, start_time")
    with pytest.raises(FilterError, match="another order_by"):
        F.decode_page_token(token, "metrics.auc ASC, start_time")
    wrong_type = F.encode_page_token(["high", BASE, "abc"], "metrics.auc DESC, start_time")
    with pytest.raises(FilterError, match="wrong type"):
        F.decode_page_token(wrong_type, "metrics.auc DESC, start_time")
    with pytest.raises(FilterError, match="page_token"):
        runs_query(None, None, "name", 10, F.encode_page_token(["a", "b", "c"], "name"))


def test_tampered_tokens_are_refused_or_harmless(world):
    """Whatever a client puts in a token, runs_query raises FilterError or builds SQL that runs."""
    import base64
    import json

    con, _ = world
    order = "metrics.auc DESC, start_time, params.lr"
    good = json.loads(base64.urlsafe_b64decode(F.encode_page_token([0.5, BASE, 0.1, "0.1", "abc"], order) + "=="))
    rnd = random.Random(3)
    junk = [None, True, 0, -1, 10**400, 1e308, float("inf"), "", "x\x00y", "2026-01-01", "2026-01-01T00:00:00+05:00",
            "0001-01-01", "9999-12-31 23:59:59.999999", [], {}, "' OR 1=1 --"]
    refused = ran = 0
    for _ in range(300):
        body = json.loads(json.dumps(good))
        body["k"] = [rnd.choice(junk) if rnd.random() < 0.4 else v for v in body["k"]]
        if rnd.random() < 0.1:
            body["k"] = body["k"][:rnd.randrange(5)]
        token = base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")
        try:
            sql, params = runs_query(None, None, order, 5, token)
        except FilterError:
            refused += 1
            continue
        con.execute(sql, params).fetchall()
        ran += 1
    assert refused > 50 and ran > 20


@pytest.mark.parametrize("limit", [0, -1, 1001, 2.5, True, "10", None])
def test_limit_is_1_to_1000(limit):
    with pytest.raises(FilterError, match="limit"):
        runs_query(None, None, None, limit, None)


# -- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,position,words", [
    ("metrics.auc > 0.8 AND )", 22, "expected a condition"),
    ("(metrics.auc > 0.8))", 19, "closes no '('"),
    ("(metrics.auc > 0.8", 18, "')' to close the '(' at position 0"),
    ("metrics.auc >", 13, "expected a value"),
    ("metrics.auc > )", 14, "unexpected ')' at position 14; expected a value"),
    ("metrics.auc = 'high'", 12, "is a number"),
    ("tags.team = 5", 10, "quote the value"),
    ("start_time > 'last week'", 11, "ISO 8601"),
    ("start_time > 5", 11, "ISO 8601"),
    ("start_time > '0001-01-01T00:00:00+05:00'", 11, "ISO 8601"),
    ("end_time <= '2026-02-30'", 9, "ISO 8601"),
    ("duration_s LIKE '1%'", 11, "LIKE needs text"),
    ("params.x IN (1, 'a')", 9, "mixes numbers and strings"),
    ("params.x LIKE 1", 14, "quoted pattern"),
    ("foo = 1", 0, "unknown name 'foo'"),
    ("bar.x = 1", 0, "unknown prefix 'bar'"),
    ("attributes.lr = 1", 0, "unknown attribute"),
    ("params. = 1", 7, "expected a key"),
    ("params.`` = 1", 0, "empty key"),
    ("name = 'abc", 7, "unterminated string"),
    ("params.`abc = 1", 7, "unterminated quoted key"),
    ("name = 1e999", 7, "out of range"),
    ("name = 12abc", 7, "malformed number"),
    ("name ! 'a'", 5, "unexpected '!'"),
    ("name = 'a' ; DROP TABLE runs", 11, "unexpected character ';'"),
    ("name = 'a' \x00", 11, "unexpected character '\\x00'"),
    ("name = 'a' AND", 14, "unexpected end of filter"),
    ("name IS 'a'", 8, "NULL after IS"),
    ("name NOT = 'a'", 9, "LIKE, ILIKE or IN after NOT"),
    ("name IN 'a'", 8, "'(' after IN"),
    ("name IN ('a' 'b')", 13, "',' or ')' in the IN list"),
    ("name 'a'", 5, "an operator after name"),
    ("name = 'a' name = 'b'", 11, "AND, OR or the end"),
    ("`x` = 1", 0, "backticks quote a key"),
    ("名前 = 1", 0, "unexpected character"),
])
def test_errors_name_the_problem_the_place_and_the_rule(text, position, words):
    with pytest.raises(FilterError) as e:
        compile_filter(text)
    assert e.value.position == position, str(e.value)
    assert words in str(e.value)
    assert str(e.value).startswith("filter: ")
    assert isinstance(e.value, F.ValidationError) and isinstance(e.value, ValueError)


def test_limits_are_enforced_with_a_clear_error():
    with pytest.raises(FilterError, match="at most 4000 characters"):
        compile_filter("name = '" + "a" * 4000 + "'")
    ok = "(" * 50 + "name = 'a'" + ")" * 50
    compile_filter(ok)
    with pytest.raises(FilterError, match="at most 50 levels"):
        compile_filter("(" * 51 + "name = 'a'" + ")" * 51)
    with pytest.raises(FilterError, match="at most 50 levels"):
        compile_filter("NOT " * 51 + "name = 'a'")
    with pytest.raises(FilterError, match="nested too deeply"):
        compile_filter("(" * 2000)  # no RecursionError however deep the input tries to go
    compile_filter(" OR ".join(["name = 'a'"] * 200))
    with pytest.raises(FilterError, match="at most 200 comparisons"):
        compile_filter(" OR ".join(["name = 'a'"] * 201))
    with pytest.raises(FilterError, match="at most 200 comparisons"):
        compile_filter("name IN (" + ", ".join(["'a'"] * 201) + ")")


# -- injection and garbage -----------------------------------------------------------------------

# Every word the compiled SQL may contain: the module's fixed fragments. Input never adds a word.
VOCAB = set("""SELECT FROM WHERE AND OR NOT IN IS NULL LIKE ILIKE ESCAPE CAST AS VARCHAR DOUBLE TIMESTAMP BIGINT
TRUE FALSE TRY_CAST nullif NaN p m t r q value key run_id params latest_metrics tags runs experiment name status
actor start_time end_time duration_s ORDER BY ASC DESC NULLS LAST LIMIT""".split())
ALLOWED_PUNCT = set("()?,.=<>*'\\")

EVIL = ["'; DROP TABLE runs; --", "x' OR '1'='1", "1=1", "\x00", "名前", "a\"b", "a`b", "%", "_", "--", "/*", "*/",
        "\\", "Robert'); DROP TABLE params;--", "\u202e", "\u2028", "SELECT 1", "r.run_id"]


def assert_only_templates(sql: str) -> None:
    assert set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql)) <= VOCAB, sql
    rest = re.sub(r"[A-Za-z_][A-Za-z0-9_]*|\s", "", sql)
    assert set(rest) <= ALLOWED_PUNCT, sql
    # the only quoted texts are the two fixed ones
    assert set(re.findall(r"'[^']*'", sql)) <= {"'NaN'", "'\\'"}, sql
    assert not re.search(r"\d", sql), sql  # numbers are never pasted either


def quote_key(k: str, q: str) -> str:
    return q + k.replace(q, q + q) + q


def sq(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


@pytest.mark.parametrize("text", [
    "params.x = 1 OR 1=1", "name = ''; DROP TABLE runs; --'", "params.`'; DROP TABLE runs; --` = 'x'",
    'tags."a"" OR 1=1 --" = \'y\'', "name IN ('a', 'b''); DELETE FROM runs; --')", "name LIKE '%'' OR ''1''=''1'",
    "metrics.`r.run_id` > -1e10 OR params.\"SELECT\" = 'SELECT'",
])
def test_injection_attempts_stay_values(world, text):
    con, _ = world
    try:
        sql, params = compile_filter(text)
    except FilterError:
        return
    assert_only_templates(sql)
    con.execute(f"SELECT count(*) FROM runs r WHERE {sql}", params).fetchall()


def random_filter(rnd: random.Random) -> str:
    def literal():
        return rnd.choice([sq(rnd.choice(EVIL)), str(rnd.uniform(-1e6, 1e6)), str(rnd.randrange(-5, 5)),
                           '"' + rnd.choice(EVIL).replace('"', '""') + '"', "'2026-01-01T00:00:00'"])

    def field():
        k = rnd.choice(EVIL + ["lr", "auc", "team", "lr.decay"])
        return rnd.choice([f"params.{quote_key(k, '`')}", f"metrics.{quote_key(k, chr(34))}", f"tags.{quote_key(k, chr(39))}",
                           "params.lr", "metrics.auc", "tags.team", "name", "status", "start_time", "duration_s",
                           "run_id", "actor"])

    def cond(depth):
        r = rnd.random()
        if depth < 4 and r < 0.25:
            return "(" + cond(depth + 1) + rnd.choice([" AND ", " OR ", " and ", " Or "]) + cond(depth + 1) + ")"
        if depth < 4 and r < 0.35:
            return "NOT " + cond(depth + 1)
        op = rnd.choice(["=", "!=", "<>", "<", "<=", ">", ">=", "LIKE", "NOT LIKE", "ILIKE", "IN", "NOT IN",
                         "IS NULL", "IS NOT NULL"])
        if op.endswith("IN"):
            return f"{field()} {op} ({', '.join(literal() for _ in range(rnd.randrange(1, 4)))})"
        if op.endswith("NULL"):
            return f"{field()} {op}"
        return f"{field()} {op} {literal()}"

    text = cond(0)
    if rnd.random() < 0.3:  # damage it
        chars = list(text)
        for _ in range(rnd.randrange(1, 4)):
            pos = rnd.randrange(len(chars) + 1)
            if rnd.random() < 0.5 and chars:
                del chars[min(pos, len(chars) - 1)]
            else:
                chars.insert(pos, rnd.choice("()'\"`,;=<>!-.%_ \x00aZ9名\n"))
        text = "".join(chars)
    return text


def test_fuzz_filters_fail_cleanly_or_compile_to_templates_that_run(world):
    con, _ = world
    rnd = random.Random(20261111)
    compiled = failed = 0
    for _ in range(800):
        text = random_filter(rnd) if rnd.random() < 0.9 else "".join(
            chr(rnd.choice([rnd.randrange(0, 128), rnd.randrange(0, 0x3000)])) for _ in range(rnd.randrange(0, 40)))
        try:
            sql, params = compile_filter(text)
        except FilterError as e:
            failed += 1
            assert e.position is None or 0 <= e.position <= len(text)
            continue
        compiled += 1
        assert_only_templates(sql)
        assert sql.count("?") == len(params)
        con.execute(f"SELECT count(*) FROM runs r WHERE {sql}", params).fetchall()
    assert compiled > 200 and failed > 60


def test_runs_query_text_is_only_templates_too():
    sql, params = runs_query("exp'; --", "params.`x'` = 'y'", "params.`k'` DESC, tags.\"t\" ", 5,
                             F.encode_page_token([1.0, "a", "b", "c"], "params.`k'` DESC, tags.\"t\" "))
    stripped = re.sub(r"\b_sort_\b|_sort_", "", sql)
    stripped = re.sub(r"\bj\d+\b", "", stripped)  # the joins' aliases (j0, j1, ...): one per distinct field
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", stripped)) - set(F.RUN_COLUMNS)
    assert words <= VOCAB | {"LEFT", "JOIN", "ON", "v"}, words - VOCAB
    assert stripped.count("LEFT JOIN") == 4  # params.k numerically and as text, tags.t, and the filter's params.x
    assert "exp'" not in sql and "x'" not in sql and "k'" not in sql
    assert sql.count("?") == len(params)


def test_parse_tree():
    node = F.parse_filter("NOT name = 'a' OR status = 'b' AND actor = 'c'")
    assert isinstance(node, F.Or) and isinstance(node.operands[0], F.Not) and isinstance(node.operands[1], F.And)
    assert F.parse_filter("") is None
    tz = compile_filter("start_time > '2026-01-01T02:00:00+02:00'")[1]
    assert tz == ["2026-01-01 00:00:00"]
