"""User SQL reaches the views and nothing else on the machine (sql_guard), on every path that runs it."""

from __future__ import annotations

import duckdb
import pytest

from modelog import QueryError, Settings
from modelog.consumers.query import _local, _remote, sql_arrow
from modelog.processors.query_server import QueryServer
from modelog.processors.sql_guard import check_query
from modelog.processors.store import ViewStore

REFUSED = {
    "SELECT * FROM read_csv('/etc/passwd')": "table function read_csv()",
    "SELECT * FROM read_text('/etc/hostname')": "table function read_text()",
    "SELECT * FROM read_parquet('/tmp/x.parquet')": "table function read_parquet()",
    "SELECT * FROM glob('/*')": "table function glob()",
    "SELECT * FROM query('SELECT 1')": "table function query()",
    "SELECT * FROM '/etc/passwd'": "FROM '/etc/passwd': not a view or table name",
    "SELECT count(*) FROM runs WHERE run_id IN (SELECT column0 FROM read_csv('/etc/passwd'))": "read_csv()",
    "EXPLAIN ANALYZE SELECT * FROM read_csv('/etc/passwd')": "read_csv()",
    "COPY (SELECT 1) TO '/tmp/out.csv'": "got COPY",
    "ATTACH '/tmp/other.duckdb'": "got ATTACH",
    "INSTALL httpfs": "got LOAD",
    "LOAD httpfs": "got LOAD",
    "SET threads = 1": "got SET",
    "PRAGMA enable_profiling": "PRAGMA enable_profiling: not allowed",
    "CREATE TABLE x AS SELECT 1": "got CREATE",
    "SELECT 1; SELECT 2": "exactly one SQL statement",
}
ALLOWED = ["SELECT * FROM runs", "WITH c AS (SELECT run_id FROM runs) SELECT * FROM c", "DESCRIBE runs", "SHOW TABLES",
           "PRAGMA show_tables", "SUMMARIZE runs", "EXPLAIN SELECT * FROM runs", "SELECT * FROM main.runs",
           "SELECT * FROM lineage_upstream('model:credit-risk/1', 3)", "SELECT * FROM range(3)",
           "SELECT table_name FROM information_schema.tables"]


@pytest.fixture
def views(tmp_path):
    ViewStore(tmp_path / "views.duckdb").close()
    return tmp_path / "views.duckdb"


@pytest.mark.parametrize("query, why", sorted(REFUSED.items()))
def test_refused_with_the_reason(query, why):
    with pytest.raises(QueryError, match=why.replace("(", r"\(").replace(")", r"\)")):
        check_query(duckdb.connect(), query)


@pytest.mark.parametrize("query", ALLOWED)
def test_reads_of_the_views_run(views, query):
    assert _local(views, query) is not None  # runs for real against the views file


def test_every_path_refuses_reading_a_file(views, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    query = f"SELECT * FROM read_csv('{secret}')"
    with pytest.raises(QueryError, match="read_csv"):
        _local(views, query)
    settings = Settings.load(home=tmp_path / "home", env={"MODELOG_DB": str(views)})
    with pytest.raises(QueryError, match="read_csv"):
        sql_arrow(query, settings)
    store = ViewStore(views)
    server = QueryServer(store).start()
    try:
        with pytest.raises(QueryError, match="read_csv"):
            _remote(server.url + "/sql", query)
        with pytest.raises(QueryError, match="not a view or table name"):
            _remote(server.url + "/sql", f"SELECT * FROM '{secret}'")
        # the writer's own instance still writes and reads files: the guard is per query, not global
        assert _remote(server.url + "/sql", "SELECT count(*) AS n FROM runs").column("n").to_pylist() == [0]
    finally:
        server.stop()
        store.close()


def test_an_accepted_text_is_remembered_and_a_refused_one_is_checked_every_time(tmp_path):
    from modelog.processors import sql_guard

    con = duckdb.connect()
    sql_guard._ACCEPTED.clear()
    sql_guard.check_query(con, "SELECT 1 AS x")
    assert "SELECT 1 AS x" in sql_guard._ACCEPTED
    for _ in range(2):
        with pytest.raises(QueryError, match="read_csv"):
            sql_guard.check_query(con, "SELECT * FROM read_csv('/etc/passwd')")
    assert "SELECT * FROM read_csv('/etc/passwd')" not in sql_guard._ACCEPTED
