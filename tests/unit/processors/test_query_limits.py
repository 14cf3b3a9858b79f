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
