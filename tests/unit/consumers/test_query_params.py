"""Bound parameters in SQL over the views: in-process, through the processor's endpoint, over the lake's reader."""

from __future__ import annotations

import urllib.request

import pytest

from factories import sample_records
from modelog import QueryError, Settings
from modelog.consumers.query import _local, _remote, sql_arrow
from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.query_server import QueryServer, parse_params
from modelog.processors.store import ViewStore
from modelog.wire.codec import Codec

QUERY = "SELECT run_id, name FROM runs WHERE run_id = ? AND ? = ?"


@pytest.fixture
def store(tmp_path):
    codec = Codec()
    s = ViewStore(tmp_path / "views.duckdb")
    values = [codec.encode(t, r) for t, r in sample_records().items()]
    s.apply([RawRecord("t", 0, i, None, b"k", v) for i, v in enumerate(values)], Projector())
    yield s
    s.close()


def run_id() -> str:
    return sample_records()["RunStarted"]["run_id"]


def test_params_bind_in_process_and_never_paste(store, tmp_path):
    store.close()
    path = tmp_path / "views.duckdb"
    assert _local(path, QUERY, None, [run_id(), 1, 1]).column("run_id").to_pylist() == [run_id()]
    # a value that would be SQL if pasted is a plain string when bound
    assert _local(path, QUERY, None, ["x' OR '1'='1", 1, 1]).num_rows == 0
    settings = Settings.load(home=tmp_path / "home", env={"MODELOG_DB": str(path)})
    assert sql_arrow(QUERY, settings, params=(run_id(), "a", "a")).num_rows == 1


def test_params_bind_through_the_endpoint(store):
    server = QueryServer(store).start()
    try:
        url = server.url + "/sql"
        assert _remote(url, QUERY, None, [run_id(), 2, 2]).column("run_id").to_pylist() == [run_id()]
        assert _remote(url, QUERY, None, [run_id(), 2, 3]).num_rows == 0
        lists = _remote(url, "SELECT run_id FROM runs WHERE list_contains(?, run_id)", None, [[run_id(), "x"]])
        assert lists.column("run_id").to_pylist() == [run_id()]
        with pytest.raises(QueryError, match="X-Modelog-Params: must be a JSON array"):
            req = urllib.request.Request(url, data=b"SELECT 1", headers={"X-Modelog-Params": "{"}, method="POST")
            try:
                urllib.request.urlopen(req, timeout=10)
            except urllib.error.HTTPError as exc:
                raise QueryError(exc.read().decode()) from None
    finally:
        server.stop()


@pytest.mark.parametrize("header, rule", [("{}", "JSON array of strings"), ('[{"a": 1}]', "JSON array of strings"),
                                          ('[[[1]]]', "or lists of them"), ("[1,", "must be a JSON array")])
def test_bad_params_header_is_a_clear_error(header, rule):
    with pytest.raises(QueryError, match=rule):
        parse_params(header)
