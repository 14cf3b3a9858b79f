"""Answers of the SQL endpoint kept while the views are unchanged (decision 0028): the rule saying which
statements may be kept, the names it reads off DuckDB, the bounded cache, and the endpoint over a real views
file -- an answer is given again only until the next commit, never for a statement reading the clock or chance,
and never across parameters."""

from __future__ import annotations

import copy
import http.client
import threading
import urllib.parse

import duckdb
import pyarrow as pa
import pytest

from factories import sample_records
from modelog import Settings
from modelog.consumers.query import _remote, close_connections
from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.query_server import CACHE_HEADER, QueryServer
from modelog.processors.result_cache import ResultCache, cacheable, unstable_names
from modelog.processors.store import ViewStore
from modelog.wire.codec import Codec
from modelog.wire.errors import ConfigError

# -- which statements may be kept ------------------------------------------------------------------------------

FUNCTIONS = frozenset({"now", "random", "ago", "current_setting"})


@pytest.mark.parametrize("query", [
    "SELECT run_id FROM runs WHERE experiment = 'x'",
    "  -- the best runs\n /* a comment */ (SELECT 1)",
    "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
    "FROM latest_metrics WHERE key = 'auc'",
    "SELECT platform, version, year FROM runs",            # columns named like functions: not calls
    "SELECT date_trunc('day', start_time) FROM runs",       # not in the unstable names given
])
def test_a_query_of_the_data_only_may_be_kept(query):
    assert cacheable(query, FUNCTIONS, frozenset({"clock_view"}))


@pytest.mark.parametrize("query", [
    "SELECT now()", "select NOW ()", 'SELECT "now"()', "SELECT random() AS r",
    "SELECT current_timestamp", "SELECT * FROM runs WHERE start_time > CURRENT_DATE",
    "SELECT * FROM metrics USING SAMPLE 10", "SELECT * FROM metrics TABLESAMPLE 5%",
    "SELECT ago(INTERVAL 1 DAY)", "SELECT current_setting('threads')",
    "SELECT * FROM duckdb_memory()", "SELECT * FROM pragma_database_size()", "SELECT get_current_time()",
    "SELECT * FROM clock_view",
    "EXPLAIN ANALYZE SELECT 1", "DESCRIBE runs", "SHOW TABLES", "PRAGMA show_tables", "",
])
def test_a_query_that_moves_without_a_commit_is_never_kept(query):
    assert not cacheable(query, FUNCTIONS, frozenset({"clock_view"}))


def test_unstable_names_come_from_the_engine_and_follow_views_and_macros():
    con = duckdb.connect()
    con.execute("CREATE TABLE t (ts TIMESTAMP, v DOUBLE)")
    con.execute("CREATE VIEW recent AS SELECT * FROM t WHERE ts > now() - INTERVAL 1 HOUR")
    con.execute("CREATE VIEW recent_big AS SELECT * FROM recent WHERE v > 1")  # unstable through `recent`
    con.execute("CREATE VIEW plain AS SELECT date_trunc('hour', ts) AS h, v FROM t")
    con.execute("CREATE MACRO jitter(x) AS x + random()")
    functions, relations = unstable_names(con)
    assert {"now", "random", "uuid", "current_setting", "ago", "jitter", "read_csv", "duckdb_memory"} <= functions
    assert not {"date_trunc", "sum", "abs", "range", "unnest", "if", "nullif"} & functions
    assert relations == {"recent", "recent_big"}
    assert not cacheable("SELECT * FROM recent_big", functions, relations)
    assert cacheable("SELECT h, sum(v) FROM plain GROUP BY h", functions, relations)


# -- the cache itself ------------------------------------------------------------------------------------------

def test_answers_of_an_older_generation_are_never_given():
    c = ResultCache(1000)
    c.put(1, "q", b"old")
    assert c.get(1, "q") == b"old"
    assert c.get(2, "q") is None and len(c) == 0   # the views changed: everything older dropped
    c.put(1, "q", b"stale")                        # a statement that started before the change finishes late
    assert c.get(2, "q") is None
    c.put(2, "q", b"new")
    c.advance(3)                                   # a commit drops them at once, not at the next request
    assert len(c) == 0 and c.size == 0
    assert (c.hits, c.misses) == (1, 2)


def test_the_cache_is_bounded_in_bytes_least_recently_used_first():
    c = ResultCache(100)
    for k in "abcd":
        c.put(0, k, bytes(25))
    assert c.get(0, "a") == bytes(25)             # a is now the most recent
    c.put(0, "e", bytes(25))
    assert c.size == 100 and c.get(0, "b") is None and c.get(0, "a") is not None
    c.put(0, "huge", bytes(26))                    # more than a quarter of the whole: not kept
    assert c.get(0, "huge") is None and c.size == 100


# -- the endpoint over a real views file ----------------------------------------------------------------------

CANDIDATE = "SELECT value FROM tags WHERE key = 'candidate'"


@pytest.fixture
def store(tmp_path):
    codec = Codec()
    s = ViewStore(tmp_path / "views.duckdb")
    s.apply([RawRecord("t", 0, i, None, b"k", codec.encode(t, r)) for i, (t, r) in enumerate(sample_records().items())],
            Projector())
    yield s
    s.close()


def retag(store, value: str, offset: int) -> None:
    rec = copy.deepcopy(sample_records()["TagsSet"])
    rec["envelope"]["event_id"] = f"01890f5e-0000-7000-8009-{offset:012d}"
    rec["envelope"]["occurred_at"] += offset
    rec["tags"] = {"candidate": value}
    store.apply([RawRecord("t", 0, 1000 + offset, None, b"k", Codec().encode("TagsSet", rec))], Projector())


def post(url: str, query: str, headers: dict | None = None) -> tuple[list[dict], str]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", "/sql", body=query.encode(), headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body
        return pa.ipc.open_stream(body).read_all().to_pylist(), resp.getheader(CACHE_HEADER)
    finally:
        conn.close()


def test_an_answer_is_given_again_until_the_views_change(store):
    server = QueryServer(store).start()
    try:
        assert post(server.url, CANDIDATE) == ([{"value": "yes"}], "miss")
        assert post(server.url, CANDIDATE) == ([{"value": "yes"}], "hit")
        assert post(server.url, CANDIDATE + " ") == ([{"value": "yes"}], "miss")  # another text: run
        retag(store, "no", 1)
        assert len(server.cache) == 0  # dropped at the commit
        assert post(server.url, CANDIDATE) == ([{"value": "no"}], "miss")
        assert post(server.url, CANDIDATE) == ([{"value": "no"}], "hit")
        assert post(server.url, CANDIDATE, {"Cache-Control": "no-cache"}) == ([{"value": "no"}], "bypass")
        assert post(server.url, "SELECT now() AS t, value FROM tags WHERE key = 'candidate'")[1] == "bypass"
        assert post(server.url, "SELECT now() AS t, value FROM tags WHERE key = 'candidate'")[1] == "bypass"
        stamp = "2999-01-01T00:00:00Z"
        assert post(server.url, CANDIDATE, {"X-Modelog-As-Of": stamp}) == ([{"value": "no"}], "bypass")
    finally:
        server.stop()


def test_a_kept_answer_of_a_log_not_governed_opens_no_cursor(store, monkeypatch):
    """Before the log is governed everyone reads everything: once the store knows that (read after its last
    governance change), a kept answer is found without a reader cursor. A batch that governs the log takes
    that knowledge away at its commit, so the next request identifies its sender again."""
    server = QueryServer(store).start()
    opened = []
    reader = store.reader
    monkeypatch.setattr(store, "reader", lambda: opened.append(1) or reader())
    try:
        assert server.respond(CANDIDATE.encode(), {}, None, None)[1] == "miss"
        assert len(opened) == 1
        assert server.respond(CANDIDATE.encode(), {}, None, None)[1] == "hit"
        assert len(opened) == 1  # the hit opened none
        store._governance_generation += 1  # what a commit that wrote keys, grants or revocations does
        assert server.respond(CANDIDATE.encode(), {}, None, None)[1] == "hit"
        assert len(opened) == 2  # governance read again, through a cursor, before the kept answer was given
    finally:
        server.stop()


def test_parameters_are_part_of_what_is_kept(store):
    server = QueryServer(store).start()
    try:
        url = server.url + "/sql"
        q = "SELECT count(*) AS n FROM tags WHERE key = ?"
        for _ in range(2):
            assert _remote(url, q, None, ["candidate"]).to_pylist() == [{"n": 1}]
            assert _remote(url, q, None, ["nothing"]).to_pylist() == [{"n": 0}]
            assert _remote(url, q, None, ["candidate"], cache=False).to_pylist() == [{"n": 1}]
        assert (server.cache.hits, len(server.cache)) == (2, 2)
    finally:
        close_connections()
        server.stop()


def test_no_cache_when_turned_off_or_the_store_does_not_count_commits(store, tmp_path):
    server = QueryServer(store, cache_bytes=0).start()
    try:
        assert server.cache is None
        assert post(server.url, CANDIDATE) == ([{"value": "yes"}], "bypass")
        assert post(server.url, CANDIDATE) == ([{"value": "yes"}], "bypass")
    finally:
        server.stop()
    assert Settings.load(home=tmp_path, env={"MODELOG_SQL_CACHE_MB": "0.5"}).sql_cache_mb == 0.5
    with pytest.raises(ConfigError, match="MODELOG_SQL_CACHE_MB: must be >= 0"):
        Settings.load(home=tmp_path, env={"MODELOG_SQL_CACHE_MB": "-1"})


def test_a_statement_finishing_after_a_commit_is_not_kept_as_the_new_answer(store, monkeypatch):
    """A statement reads the generation before it runs; if a batch commits while it runs, its answer is kept
    under the older generation at most, and the first request after the commit runs the statement again."""
    server = QueryServer(store).start()
    try:
        check_late_statement(server, store, monkeypatch)
    finally:
        server.stop()


def check_late_statement(server, store, monkeypatch):
    started, go_on = threading.Event(), threading.Event()
    run = server._run

    def slow_run(*args, **kwargs):
        table = run(*args, **kwargs)
        started.set()
        go_on.wait(10)
        return table

    monkeypatch.setattr(server, "_run", slow_run)
    got = {}
    t = threading.Thread(target=lambda: got.update(first=server.respond(CANDIDATE.encode(), {}, None, None)))
    t.start()
    assert started.wait(10)
    retag(store, "maybe", 2)  # commits while the first statement is between its run and its keeping
    go_on.set()
    t.join(10)
    assert got["first"][1] == "miss"
    monkeypatch.setattr(server, "_run", run)
    data, how = server.respond(CANDIDATE.encode(), {}, None, None)
    assert how == "miss" and pa.ipc.open_stream(data).read_all().to_pylist() == [{"value": "maybe"}]
    assert server.cache.generation == store.generation


def test_scoped_readers_kept_idle_are_not_given_out_after_the_store_opened_its_file_again(store):
    """A governed endpoint keeps idle scoped cursors; after the store opens its file again (a checkpoint that
    failed after its commit, decision 0029; the rewrite after an erasure) they belong to the old connection
    and must not serve the next request."""
    from modelog.processors.query_server import ScopedReaders
    from modelog.wire.roles import Scope

    readers = ScopedReaders(store)
    scope = Scope("alice", experiments=frozenset({"exp"}))
    with readers.reader(scope, 1) as cur:
        before = cur.execute("SELECT count(*) FROM log_events").fetchone()
    with readers.reader(scope, 1) as kept:
        assert kept is cur  # kept idle and given again
    store._reopen(RuntimeError("a checkpoint failed after its commit"))
    with readers.reader(scope, 1) as fresh:
        assert fresh is not cur
        assert fresh.execute("SELECT count(*) FROM log_events").fetchone() == before
