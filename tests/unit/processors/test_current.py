"""The current-state tables (processors/current.py): kept batch by batch, they equal the views' definitions
over every fact -- whatever the order the facts arrive in and however they are cut into batches."""

from __future__ import annotations

import math
import random
import uuid

import pytest

from factories import ENVIRONMENT, envelope
from modelog.processors import current
from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.store import ViewStore
from modelog.wire.codec import Codec

# the views as they were defined over the facts alone, before the current-state tables (the reference)
REFERENCE = {
    "runs": """
        WITH s AS (SELECT * FROM log_run_started QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY event_id) = 1),
             e AS (SELECT * FROM log_run_ended QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY event_id) = 1)
        SELECT s.run_id, s.experiment, s.name, coalesce(e.status, 'RUNNING') AS status, s.start_time, e.end_time,
               epoch_us(e.end_time) / 1e6 - epoch_us(s.start_time) / 1e6 AS duration_s, s.actor, e.error,
               s.python_version, s.platform, s.hostname, s.cpu_count, s.memory_bytes, s.gpus, s.git_commit,
               s.git_branch, s.git_dirty, s.command, cardinality(s.packages) AS package_count
        FROM s LEFT JOIN e USING (run_id)""",
    "params": """SELECT run_id, key, value, value_type, logged_at FROM log_params
        QUALIFY row_number() OVER (PARTITION BY run_id, key ORDER BY event_id) = 1""",
    "tags": """SELECT run_id, key, value, set_at FROM log_tags
        QUALIFY row_number() OVER (PARTITION BY run_id, key ORDER BY set_at DESC, event_id DESC) = 1""",
    "latest_metrics": """SELECT run_id, key, arg_max(value, (step, "timestamp", event_id)) AS value, max(step) AS step,
        arg_max("timestamp", (step, "timestamp", event_id)) AS "timestamp",
        min(value) FILTER (WHERE NOT isnan(value)) AS min_value, max(value) FILTER (WHERE NOT isnan(value)) AS max_value,
        count(*) AS points FROM log_metrics GROUP BY run_id, key""",
}


def _id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128)))


def history(seed: int, runs: int = 12) -> list[tuple[str, dict]]:
    """A messy history: runs started twice, ended twice or never, ended before started, params logged
    again with other values (the first stays), tags overwritten at the same instant, metric ties, NaN,
    NULL errors and commits."""
    rng = random.Random(seed)
    t0 = 1_760_000_000_000_000
    out: list[tuple[str, dict]] = []
    for r in range(runs):
        run = f"run{r:03d}"
        for _ in range(rng.choice([1, 1, 2])):
            env = {**ENVIRONMENT, "git_commit": rng.choice([None, "a" * 40]), "packages": {"x": "1"} if r % 2 else {}}
            out.append(("RunStarted", {"envelope": envelope("RunStarted", run, _id(rng)), "run_id": run,
                                       "experiment": rng.choice(["a", "b"]), "name": rng.choice([f"n{r}", f"m{r}"]),
                                       "start_time": t0 + rng.randrange(10**6), "tags": {}, "environment": env}))
        for _ in range(rng.choice([0, 1, 2])):
            status = rng.choice(["FINISHED", "FAILED", "KILLED"])
            out.append(("RunEnded", {"envelope": envelope("RunEnded", run, _id(rng)), "run_id": run, "status": status,
                                     "end_time": t0 + 10**6 + rng.randrange(10**6),
                                     "error": None if status == "FINISHED" or rng.random() < 0.5 else "boom"}))
        for _ in range(rng.randrange(4)):
            out.append(("ParamsLogged", {"envelope": envelope("ParamsLogged", run, _id(rng)), "run_id": run, "params": [
                {"key": k, "value": str(rng.randrange(5)), "value_type": "int"} for k in rng.sample("pqrs", 2)]}))
        for _ in range(rng.randrange(4)):
            out.append(("TagsSet", {"envelope": envelope("TagsSet", run, _id(rng), occurred_at=t0 + rng.randrange(3)),
                                    "run_id": run, "tags": {k: rng.choice(["x", "y", "z"]) for k in rng.sample("tuv", 2)}}))
        for _ in range(rng.randrange(5)):
            out.append(("MetricsLogged", {"envelope": envelope("MetricsLogged", run, _id(rng)), "run_id": run, "points": [
                {"key": rng.choice(["loss", "auc"]), "value": rng.choice([math.nan, rng.random(), -1.0]),
                 "step": rng.randrange(4), "timestamp": t0 + rng.randrange(3)} for _ in range(rng.randrange(1, 6))]}))
    return out


def project(path, events: list[tuple[str, dict]], batch_sizes: list[int]) -> ViewStore:
    codec = Codec()
    encoded = [codec.encode(t, r) for t, r in events]
    store = ViewStore(path)
    projector, i, offset = Projector(), 0, 0
    while i < len(encoded):
        n = batch_sizes[offset % len(batch_sizes)]
        store.apply([RawRecord("t", 0, i + j, None, b"k", v) for j, v in enumerate(encoded[i:i + n])], projector)
        i, offset = i + n, offset + 1
    return store


def rows(store: ViewStore, sql: str) -> list[str]:
    return sorted(map(repr, store.reader().execute(sql).fetchall()))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kept_tables_equal_the_views_over_every_fact_in_any_order(tmp_path, seed):
    events = history(seed, runs=40)
    rng = random.Random(seed)
    shuffled = events[:]
    rng.shuffle(shuffled)
    in_order = project(tmp_path / "a.duckdb", events, [len(events)])
    pieces = project(tmp_path / "b.duckdb", shuffled, [1, 3, 7, 2])
    try:
        for view, reference in REFERENCE.items():
            expected = rows(in_order, reference)
            assert len(expected) > 3, view  # the history exercises every view
            assert rows(in_order, f"SELECT * FROM {view}") == expected, view
            assert rows(pieces, f"SELECT * FROM {view}") == expected, view
        for table in current.CURRENT.values():  # each table equals its definition from the facts alone
            for store in (in_order, pieces):
                assert rows(store, f"SELECT * FROM {table.name}") == rows(store, current.definition_sql(table))
    finally:
        in_order.close()
        pieces.close()


def test_the_history_holds_the_awkward_cases(tmp_path):
    store = project(tmp_path / "v.duckdb", history(1, runs=40), [5])
    try:
        q = store.reader()
        twice = q.execute("SELECT count(*) FROM (SELECT run_id FROM log_run_started GROUP BY run_id HAVING count(*) > 1)")
        assert twice.fetchall()[0][0] > 0
        assert q.execute("SELECT count(*) FROM runs WHERE status = 'RUNNING'").fetchall()[0][0] > 0
        # a run ended twice, one end without an error: the first end decides, NULL error included
        mixed = q.execute("SELECT count(*) FROM (SELECT run_id FROM log_run_ended GROUP BY run_id "
                          "HAVING count(*) = 2 AND count(error) = 1)")
        assert mixed.fetchall()[0][0] > 0
        assert q.execute("SELECT count(*) FROM latest_metrics WHERE isnan(value)").fetchall()[0][0] > 0
    finally:
        store.close()


def test_a_file_written_before_the_tables_is_filled_on_open(tmp_path):
    path = tmp_path / "old.duckdb"
    project(path, history(4), [4]).close()
    import duckdb

    con = duckdb.connect(str(path))
    expected = {v: sorted(map(repr, con.execute(REFERENCE[v]).fetchall())) for v in REFERENCE}
    for table in current.CURRENT:
        con.execute(f"DROP TABLE {table}")
    con.close()
    store = ViewStore(path)  # as a views file from before this change is opened
    try:
        for view in REFERENCE:
            assert rows(store, f"SELECT * FROM {view}") == expected[view], view
    finally:
        store.close()


def test_as_of_reads_current_state_from_the_facts(tmp_path):
    from modelog.processors.query_server import arrow_result

    store = project(tmp_path / "v.duckdb", history(5), [6])
    try:
        con = store.reader()
        now = sorted(map(repr, arrow_result(con, "SELECT * FROM runs").to_pylist()))
        later = sorted(map(repr, arrow_result(store.reader(), "SELECT * FROM runs", as_of="2100-01-01").to_pylist()))
        early = arrow_result(store.reader(), "SELECT * FROM runs", as_of="2000-01-01").num_rows
        assert later == now and len(now) > 0 and early == 0
    finally:
        store.close()
