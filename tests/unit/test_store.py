"""Projection into a real DuckDB file: exact rows, idempotence, atomic batches, dead letters."""

import math

import duckdb
import pytest

from factories import sample_records
from modelog._codec import Codec
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
    with pytest.raises(OSError):
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
