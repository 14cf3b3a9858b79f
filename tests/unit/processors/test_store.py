"""Projection into a real DuckDB file: exact rows, idempotence, atomic batches, dead letters."""

import math

import duckdb
import pytest

from factories import sample_records
from modelog.wire.codec import Codec
from modelog.wire.metric_columns import from_points
from modelog.wire.errors import QueryError
from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.store import VIEW_NAMES, ViewStore


N = len(sample_records())  # one event per event type


def records(values, topic="t", start=0):
    return [RawRecord(topic, 0, start + i, 1_760_000_000_000 + i, b"k", v) for i, v in enumerate(values)]


@pytest.fixture
def encoded():
    codec = Codec()
    return [codec.encode(t, r) for t, r in sample_records().items()]


@pytest.fixture
def store(tmp_path):
    s = ViewStore(tmp_path / "views.duckdb")
    yield s
    s.close()


def snapshot(store):
    cur = store.reader()
    return {v: sorted(map(repr, cur.execute(f"SELECT * FROM {v}").fetchall())) for v in VIEW_NAMES}


def test_views_hold_exactly_the_sample_events(store, encoded):
    stats, dead = store.apply(records(encoded), Projector())
    assert (stats.applied, stats.dead, dead) == (N, 0, [])
    q = store.reader()
    run = q.execute("SELECT run_id, experiment, name, status, error, git_commit, package_count FROM runs").fetchall()
    assert run == [(sample_records()["RunStarted"]["run_id"], "credit-risk", "baseline", "FAILED", "ValueError: boom",
                    "a" * 40, 1)]
    values = q.execute("SELECT key, step, value FROM metrics ORDER BY timestamp").fetchall()
    assert [(k, s) for k, s, _ in values] == [("loss", 0), ("loss", 1), ("auc", 1), ("auc", 2)]
    assert values[0][2] == 0.5 and math.isnan(values[1][2]) and values[2][2] == math.inf and values[3][2] == -math.inf
    latest = {k: (v, s) for k, v, s in q.execute("SELECT key, value, step FROM latest_metrics").fetchall()}
    assert latest["auc"] == (-math.inf, 2)
    assert math.isnan(latest["loss"][0]) and latest["loss"][1] == 1  # the highest step wins, even if NaN
    assert q.execute("SELECT key, value FROM params ORDER BY key").fetchall() == [("depth", "6"), ("lr", "0.01")]
    assert q.execute("SELECT key, value FROM tags ORDER BY key").fetchall() == [("candidate", "yes"), ("team", "risk")]
    assert q.execute("SELECT path, sha256, size_bytes FROM artifacts").fetchall() == [("model.pkl", "0" * 64, 123)]
    assert q.execute("SELECT experiment, description, run_count FROM experiments").fetchall() == [
        ("credit-risk", "PD model", 1)]
    audit = q.execute('SELECT event_type, actor, topic, "partition", "offset" FROM audit_log ORDER BY "offset"').fetchall()
    assert [a[0] for a in audit] == list(sample_records()) and {a[1] for a in audit} == {"alice"}
    assert [a[4] for a in audit] == list(range(N))


def test_same_events_twice_change_nothing(store, encoded):
    # same event ids (the factories use one fixed id per type) delivered again, even at other offsets
    store.apply(records(encoded), Projector())
    before = snapshot(store)
    stats, _ = store.apply(records(encoded, start=100), Projector())
    stats2, _ = store.apply(records(encoded + encoded, start=200), Projector())
    assert stats.applied == 0 and stats.duplicates == N and stats2.applied == 0
    assert snapshot(store) == before


def test_duplicates_inside_one_batch_count_once(store, encoded):
    store.apply(records(encoded + encoded), Projector())
    assert store.reader().execute("SELECT count(*) FROM metrics").fetchone() == (4,)


def test_a_failing_batch_leaves_nothing_behind(store, encoded, monkeypatch):
    from modelog.processors import store as store_mod

    real = store_mod.to_arrow

    def explode(table, cols):
        if table == "log_metrics":
            raise OSError("disk full")
        return real(table, cols)

    monkeypatch.setattr(store_mod, "to_arrow", explode)
    with pytest.raises(OSError, match="^disk full$"):
        store.apply(records(encoded), Projector())
    monkeypatch.setattr(store_mod, "to_arrow", real)
    assert store.reader().execute("SELECT count(*) FROM audit_log").fetchone() == (0,)
    assert store.positions() == {}
    store.apply(records(encoded), Projector())
    assert store.reader().execute("SELECT count(*) FROM audit_log").fetchone() == (N,)


def test_bad_records_become_dead_letters_and_the_rest_goes_on(store, encoded):
    codec = Codec()
    invalid = dict(sample_records()["TagsSet"])
    invalid["envelope"] = dict(invalid["envelope"], event_id="01890f5e-0000-7000-8000-00000000dead")
    invalid["tags"] = {"bad key!": "x"}
    bad = [b"garbage", b"\xc3\x01" + b"\x11" * 8 + b"xx", codec.encode("TagsSet", invalid)]
    stats, dead = store.apply(records(bad + encoded), Projector())
    assert stats.applied == N
    assert [d.reason for d in dead] == ["not_modelog_event", "unknown_schema", "invalid_event"]
    assert "TagsSet.tags" in dead[2].detail and "letters" in dead[2].detail
    rows = store.reader().execute('SELECT "offset", reason FROM dead_letters ORDER BY "offset"').fetchall()
    assert rows == [(0, "not_modelog_event"), (1, "unknown_schema"), (2, "invalid_event")]
    store.apply(records(bad), Projector())  # redelivered dead letters are not doubled
    assert store.reader().execute("SELECT count(*) FROM dead_letters").fetchone() == (3,)


def test_positions_advance_with_the_batch(store, encoded):
    store.apply(records(encoded), Projector())
    assert store.positions() == {("t", 0): N}
    store.apply(records(encoded[:2], start=3), Projector())  # older redelivery never moves it back
    assert store.positions() == {("t", 0): N}


def test_views_file_can_be_read_by_plain_duckdb(tmp_path, encoded):
    s = ViewStore(tmp_path / "v.duckdb")
    s.apply(records(encoded), Projector())
    s.close()
    con = duckdb.connect(str(tmp_path / "v.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM runs").fetchone() == (1,)
    con.close()


LATEST_FROM_POINTS = """
SELECT run_id, key, arg_max(value, (step, "timestamp", event_id)) AS value, max(step) AS step,
       arg_max("timestamp", (step, "timestamp", event_id)) AS "timestamp",
       min(value) FILTER (WHERE NOT isnan(value)) AS min_value, max(value) FILTER (WHERE NOT isnan(value)) AS max_value,
       count(*) AS points
FROM log_metrics GROUP BY run_id, key"""


def metric_events(codec, n_events=40, seed=7):
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n_events):
        rec = sample_records()["MetricsLogged"]
        points = [{"key": rng.choice(["loss", "auc"]), "step": rng.randrange(10),  # ties and repeats
                   "value": rng.choice([math.nan, rng.random(), -1.0]),
                   "timestamp": 1_760_000_000_000_000 + rng.randrange(1000)} for _ in range(rng.randrange(1, 6))]
        rec = {**rec, "envelope": {**rec["envelope"], "event_id": f"01890f5e-0000-7000-8002-{i:012d}"},
               "run_id": f"run-{i % 3}",  # both forms of a batch: records, and columns (decision 0021)
               **({"points": points, "columns": None} if i % 2 else {"points": [], "columns": from_points(points)})}
        out.append(codec.encode("MetricsLogged", rec))
    return out


def test_latest_metrics_from_batch_summaries_equals_the_points(store):
    events = metric_events(Codec())
    for i in range(0, len(events), 6):  # several batches: several summaries per (run, key)
        store.apply(records(events[i:i + 6], start=i), Projector())
    store.apply(records(events[:10], start=100), Projector())  # redelivered: no new summaries
    q = store.reader()
    summaries = q.execute("SELECT count(*) FROM log_metric_summaries").fetchone()[0]
    assert 6 < summaries < q.execute("SELECT count(*) FROM log_metrics").fetchone()[0]
    assert rows_of(q, "SELECT * FROM latest_metrics") == rows_of(q, LATEST_FROM_POINTS)


def test_latest_metrics_as_of_an_instant_uses_the_points_up_to_it(store):
    from modelog.processors.query_server import as_of_views

    events = metric_events(Codec())
    store.apply(records(events), Projector())
    cur = store.reader()
    as_of_views(cur, "2025-10-09T08:53:20.0005")  # half of the points' timestamps (epoch 1,760,000,000 s + 0..1 ms)
    got = rows_of(cur, "SELECT * FROM latest_metrics")
    want = rows_of(store.reader(), LATEST_FROM_POINTS.replace(
        "FROM log_metrics", "FROM log_metrics WHERE \"timestamp\" <= TIMESTAMP '2025-10-09 08:53:20.0005'"))
    assert got == want
    points_then = sum(r[-1] for r in cur.execute("SELECT * FROM latest_metrics").fetchall())
    assert 0 < points_then < store.reader().execute("SELECT count(*) FROM log_metrics").fetchone()[0]


def test_an_older_views_file_gets_its_summaries_on_open(tmp_path):
    path = tmp_path / "old.duckdb"
    s = ViewStore(path)
    s.apply(records(metric_events(Codec())), Projector())
    before = rows_of(s.reader(), "SELECT * FROM latest_metrics")
    s.con.execute("DROP VIEW latest_metrics")
    s.con.execute("DROP TABLE log_metric_summaries")
    s.close()
    s = ViewStore(path)  # as a file written before the table existed
    assert rows_of(s.reader(), "SELECT * FROM latest_metrics") == before
    s.close()


def rows_of(cur, sql):
    return sorted(repr(r) for r in cur.execute(sql).fetchall())


def test_memory_limit_is_applied_and_a_bad_one_is_named(tmp_path):
    s = ViewStore(tmp_path / "a.duckdb", memory_limit="300MB")
    assert s.reader().execute("SELECT current_setting('memory_limit')").fetchone()[0] in ("286.1 MiB", "300.0 MB")
    s.close()
    with pytest.raises(QueryError, match=r"^MODELOG_DUCKDB_MEMORY_LIMIT: .*Memory must have a number"):
        ViewStore(tmp_path / "b.duckdb", memory_limit="lots")


def test_batches_are_split_by_bytes_in_order():
    from modelog.processors.app import by_size

    recs = [RawRecord("t", 0, i, None, b"k", b"x" * n) for i, n in enumerate([3, 3, 3, 10, 1, 1])]
    chunks = by_size(recs, 6)
    assert [[r.offset for r in c] for c in chunks] == [[0, 1], [2], [3], [4, 5]]
    assert by_size([], 6) == []


def test_the_partition_trees_persist_with_the_batch_and_survive_a_rollback_and_a_restart(tmp_path, encoded):
    """Tamper evidence (decision 0023): every record, dead letters too, goes into its partition's tree in
    the batch's transaction; due checkpoints are published before the commit; a failed publish rolls the
    batch back and leaves the tree as it was; a reopened file goes on with the same tree."""
    from modelog.processors.chain import Chain, record_leaf
    from modelog.processors.merkle import root_of

    log = records(encoded + [b"garbage"], topic="t") + records(encoded, topic="t", start=N + 1)
    published: list[dict] = []

    def open_store():
        s = ViewStore(tmp_path / "views.duckdb")
        s.chain = Chain(every=4, seconds=0)
        s.publish_checkpoints = published.extend
        return s

    s = open_store()
    s.apply(log[:N], Projector())
    assert [c["tree_size"] for c in published] == [4 * i for i in range(1, N // 4 + 1)]

    def refuse(payloads):
        raise OSError("broker down")

    s.publish_checkpoints = refuse
    with pytest.raises(OSError):
        s.apply(log[N:N + 8], Projector())  # the checkpoint due in this batch cannot be published
    assert s.chain.partitions[("t", 0)].size == N  # nothing of the failed batch
    s.publish_checkpoints = published.extend
    s.apply(log[N:N + 8], Projector())  # redelivered
    s.close()

    s = open_store()  # a restart: the tree comes from log_chain
    s.apply(log[N + 4:], Projector())  # at-least-once: 4 records again
    s.close()
    leaves = [record_leaf(r)[0] for r in log]
    assert [c["tree_size"] for c in published] == [4 * i for i in range(1, len(log) // 4 + 1)]
    for c in published:
        assert c["root_hash"] == root_of(leaves[:c["tree_size"]]), c["tree_size"]
        assert c["offsets"] == list(range(c["previous_size"], c["tree_size"]))


def test_a_timed_checkpoint_the_broker_refuses_is_logged_and_published_on_a_later_tick(tmp_path, encoded, caplog):
    """The checkpoint timer's tick published to a broker that was down for 120 s: DeliveryError crashed the
    projector (bench/faults.py broker-outage). Now the tick fails, commits nothing, says why, and the next
    tick publishes the same checkpoint."""
    import asyncio
    import logging

    from modelog.processors.app import TickFailures
    from modelog.processors.chain import Chain
    from modelog.wire.errors import DeliveryError

    s = ViewStore(tmp_path / "views.duckdb")
    s.chain = Chain(every=1000, seconds=0.01)
    published: list[dict] = []

    def refuse(payloads):
        raise DeliveryError("1 event(s) were not delivered to Kafka (LogCheckpoint: not acknowledged within 30s)")

    s.publish_checkpoints = refuse
    s.apply(records(encoded[:3]), Projector())  # too few for a counted checkpoint: a timed one is due later
    import time
    time.sleep(0.05)
    ticks = TickFailures("checkpoints not published")

    async def tick():
        s.chain_tick()

    with caplog.at_level(logging.ERROR, logger="modelog.processor"):
        assert asyncio.run(ticks.run(tick)) is False
        assert asyncio.run(ticks.run(tick)) is False  # still failing: logged once per RETRY_LOG_EVERY
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["checkpoints not published: DeliveryError: 1 event(s) were not delivered to Kafka "
                      "(LogCheckpoint: not acknowledged within 30s) -- retried on the next tick"]
    assert s.chain.partitions[("t", 0)].checkpoint_size == 0  # nothing committed
    s.publish_checkpoints = published.extend
    assert asyncio.run(ticks.run(tick)) is True
    assert [(c["topic"], c["tree_size"]) for c in published] == [("t", 3)]
    assert asyncio.run(ticks.run(tick)) is True and len(published) == 1  # published once
    s.close()
