"""The caps on one user statement (processors/query_server.QueryLimits): wall time, rows, memory -- each a
clear error naming its setting; the statement is stopped, the connection stays usable."""

from __future__ import annotations

import duckdb
import pytest

from modelog.processors.query_server import QueryLimits, arrow_result
from modelog.processors.store import ViewStore
from modelog.wire.errors import QueryError
from modelog.wire.settings import Settings

SLOW = "SELECT count(*) AS n FROM range(1000000) a, range(1000000) b WHERE a.range + b.range = -1"


@pytest.fixture
def con(tmp_path):
    store = ViewStore(tmp_path / "views.duckdb")
    cur = store.reader()
    yield cur
    cur.close()
    store.close()


def test_an_answer_over_the_row_cap_is_refused_naming_the_setting(con):
    assert arrow_result(con, "SELECT * FROM range(200000)", limits=QueryLimits(max_rows=200_000)).num_rows == 200_000
    with pytest.raises(QueryError, match=r"more than 199,999 rows \(MODELOG_SQL_MAX_ROWS\)"):
        arrow_result(con, "SELECT * FROM range(200000)", limits=QueryLimits(max_rows=199_999))


def test_a_statement_over_the_time_cap_is_stopped_and_the_connection_still_answers(con):
    with pytest.raises(QueryError, match=r"longer than 0.5 s \(MODELOG_SQL_TIMEOUT\) and was stopped"):
        arrow_result(con, SLOW, limits=QueryLimits(timeout_s=0.5))
    assert arrow_result(con, "SELECT 41 + 1 AS x").to_pylist() == [{"x": 42}]


def test_a_statement_needing_more_memory_than_allowed_is_a_clear_error(tmp_path):
    ViewStore(tmp_path / "v.duckdb").close()
    con = duckdb.connect(str(tmp_path / "v.duckdb"), read_only=True, config={"memory_limit": "20MB"})
    try:
        with pytest.raises(QueryError, match=r"more memory than the views may use \(MODELOG_DUCKDB_MEMORY_LIMIT\)"):
            arrow_result(con, "SELECT list(range) AS l FROM range(20000000)")
    finally:
        con.close()


def test_limits_come_from_settings_and_are_checked(tmp_path):
    s = Settings.load(home=tmp_path, env={"MODELOG_SQL_TIMEOUT": "2.5", "MODELOG_SQL_MAX_ROWS": "10"})
    assert QueryLimits.from_settings(s) == QueryLimits(timeout_s=2.5, max_rows=10)
    assert QueryLimits.from_settings(Settings.load(home=tmp_path, env={})) == QueryLimits(60.0, 5_000_000)
    from modelog.wire.errors import ConfigError

    with pytest.raises(ConfigError, match="MODELOG_SQL_MAX_ROWS: must be >= 1"):
        Settings.load(home=tmp_path, env={"MODELOG_SQL_MAX_ROWS": "0"})
    with pytest.raises(ConfigError, match="MODELOG_SQL_TIMEOUT: must be > 0"):
        Settings.load(home=tmp_path, env={"MODELOG_SQL_TIMEOUT": "0"})


def test_the_sql_endpoint_applies_its_processor_s_limits(tmp_path):
    from modelog.consumers.query import _remote
    from modelog.processors.query_server import QueryServer

    store = ViewStore(tmp_path / "views.duckdb")
    server = QueryServer(store, limits=QueryLimits(timeout_s=0.5, max_rows=3)).start()
    try:
        assert _remote(server.url + "/sql", "SELECT * FROM range(3)").num_rows == 3
        with pytest.raises(QueryError, match="MODELOG_SQL_MAX_ROWS"):
            _remote(server.url + "/sql", "SELECT * FROM range(4)")
        with pytest.raises(QueryError, match="MODELOG_SQL_TIMEOUT"):
            _remote(server.url + "/sql", SLOW)
    finally:
        server.stop()
        store.close()


ANSWERED = [("SELECT run_id, name FROM runs ORDER BY run_id", None), ("WITH x AS (SELECT 1 AS a) SELECT * FROM x", None),
            ("FROM latest_metrics", None), ("DESCRIBE runs", None), ("SHOW TABLES", None), ("PRAGMA show_tables", None),
            ("SUMMARIZE SELECT * FROM range(10)", None), ("EXPLAIN SELECT 1", None),
            ("SELECT ?::INTEGER + 1 AS x, ? AS s", [41, "é"]), ("SELECT * FROM runs WHERE false", None)]


class _Recording:
    """A cursor that notes which way a statement was run."""

    def __init__(self, cur, broken_submit: bool = False) -> None:
        self.cur, self.calls, self.broken = cur, [], broken_submit

    def _submit(self, *args):
        self.calls.append("_submit")
        if self.broken:
            raise TypeError("_submit() takes 3 positional arguments")  # as another DuckDB's signature would
        return self.cur._submit(*args)

    def sql(self, *args, **kw):
        self.calls.append("sql")
        return self.cur.sql(*args, **kw)


def test_the_one_bind_stream_answers_as_the_public_relation_does(con):
    from modelog.processors.query_server import stream

    con.execute("INSERT INTO cur_runs (run_id, started_event_id, experiment, name) "
                "SELECT 'r' || i, 'e' || i, 'exp', 'w-' || i FROM range(3) t(i)")
    for query, params in ANSWERED:
        public = (con.sql(query, params=params) if params else con.sql(query)).to_arrow_reader().read_all()
        fast, broken = _Recording(con), _Recording(con, broken_submit=True)
        assert stream(fast, query, params).read_all() == public, query
        assert stream(broken, query, params).read_all() == public, query
        if hasattr(con, "_submit"):  # this DuckDB has it: the statement was bound once, not through sql()
            assert fast.calls == ["_submit"], query
        assert broken.calls[-1] == "sql", query
    assert arrow_result(con, "SELECT name FROM runs ORDER BY name").column("name").to_pylist() == ["w-0", "w-1", "w-2"]
