"""The processor's SQL endpoint: read-only queries over HTTP on 127.0.0.1, answers as Arrow IPC.

    POST /sql       body: one SQL statement (SELECT, WITH, EXPLAIN, DESCRIBE, SHOW, PRAGMA show_tables, ...)
                    header X-Modelog-As-Of (optional): answer with the views as they were at that UTC time
                    header X-Modelog-Params (optional): JSON array bound to the statement's ? placeholders
                    200: Arrow IPC stream; 400: {"error": "..."}
    GET  /health    {"status": "ok", "ready": bool, "positions": {...}}   (200 while the process lives)
    GET  /ready     200 once the projector's consumer has joined its group, 503 before (readiness probes)
    GET  /metrics   Prometheus text format 0.0.4 (drift, alerts, predictions, projector lag; see metrics.py)
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import pyarrow as pa

from modelog.wire.errors import QueryError

from . import metrics
from .sql_guard import MAX_QUERY_BYTES, check_query
from .store import ViewStore

log = logging.getLogger(__name__)


def check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Raise QueryError unless ``query`` is one read-only statement over the views (see sql_guard)."""
    check_query(con, query)


def as_of_views(con: duckdb.DuckDBPyConnection, as_of: str) -> None:
    """Make ``con`` (a connection of its own) see the views as they were at ``as_of`` (UTC).

    Each base table is shadowed by a temporary view holding only its rows stamped at or before
    ``as_of`` (its first timestamp column: occurred_at, registered_at, decided_at, ...), and every view
    is re-created as a temporary view over those. Connection-local; the file is not touched.
    """
    from . import current
    from .store import views_sql
    from .tables import AS_OF_SHADOWS, TABLES, TS

    try:
        ts = con.execute("SELECT CAST(? AS TIMESTAMP)", [as_of]).fetchone()[0]
    except duckdb.Error as exc:
        raise QueryError(f"as_of: must be an ISO 8601 time, e.g. 2026-11-01T12:00:00 (got {as_of!r})") from exc
    db = con.execute("SELECT current_database()").fetchone()[0]
    for table, schema in TABLES.items():
        if table in AS_OF_SHADOWS:  # derived tables: re-derived from their (already shadowed) source
            continue
        col = next((f.name for f in schema if f.type == TS), None)
        where = f' WHERE "{col}" <= $ts' if col else ""
        con.execute(f'CREATE OR REPLACE TEMP VIEW {table} AS SELECT * FROM "{db}".main.{table}'
                    + where.replace("$ts", f"TIMESTAMP '{ts.isoformat(sep=' ')}'"))
    for table, select in AS_OF_SHADOWS.items():
        con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS {select}")
    con.execute(current.views_sql(temp=True))  # the current-state tables, from the shadowed facts
    sql = views_sql().replace("CREATE OR REPLACE VIEW", "CREATE OR REPLACE TEMP VIEW")
    con.execute(sql.replace("CREATE OR REPLACE MACRO", "CREATE OR REPLACE TEMP MACRO"))


@dataclass(frozen=True)
class QueryLimits:
    """Caps on one user statement: wall time (then it is interrupted) and rows in the answer. Memory is
    the DuckDB instance's ``memory_limit`` (MODELOG_DUCKDB_MEMORY_LIMIT), which a statement cannot change:
    the sandbox refuses SET."""

    timeout_s: float = 60.0
    max_rows: int = 5_000_000

    @classmethod
    def from_settings(cls, settings) -> QueryLimits:
        return cls(timeout_s=settings.sql_timeout, max_rows=settings.sql_max_rows)


BATCH_ROWS = 65_536


def arrow_result(con: duckdb.DuckDBPyConnection, query: str, as_of: str | None = None,
                 params: list | None = None, limits: QueryLimits | None = None) -> pa.Table:
    """One read-only statement's answer. ``params`` binds its ``?`` placeholders (values never pasted).
    Raises QueryError when the statement is refused by the sandbox, runs longer than ``limits.timeout_s``
    (it is interrupted), answers more than ``limits.max_rows`` rows, or runs out of memory."""
    limits = limits or QueryLimits()
    check_read_only(con, query)
    timer = threading.Timer(limits.timeout_s, con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        if as_of:
            as_of_views(con, as_of)
        rel = con.sql(query, params=params) if params else con.sql(query)
        if rel is None:
            return pa.table({})
        reader = rel.to_arrow_reader(BATCH_ROWS)
        batches, rows = [], 0
        for batch in reader:
            rows += batch.num_rows
            if rows > limits.max_rows:
                raise QueryError(f"the answer has more than {limits.max_rows:,} rows (MODELOG_SQL_MAX_ROWS): "
                                 "add a LIMIT, aggregate, or page with WHERE on a key")
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=reader.schema)
    except duckdb.InterruptException as exc:
        raise QueryError(f"the statement ran longer than {limits.timeout_s:g} s (MODELOG_SQL_TIMEOUT) and was "
                         "stopped") from exc
    except duckdb.OutOfMemoryException as exc:
        raise QueryError(f"the statement needs more memory than the views may use (MODELOG_DUCKDB_MEMORY_LIMIT): "
                         f"{exc}") from exc
    finally:
        timer.cancel()


def parse_params(header: str | None) -> list | None:
    """The ``X-Modelog-Params`` header: a JSON array bound to the statement's placeholders, each a scalar or a
    list of scalars (for ``list_contains(?, run_id)``)."""
    if not header:
        return None
    try:
        params = json.loads(header)
    except ValueError as exc:
        raise QueryError(f"X-Modelog-Params: must be a JSON array ({exc})") from None
    def scalar(p) -> bool:
        return p is None or isinstance(p, (str, int, float, bool))

    if not isinstance(params, list) or not all(scalar(p) or (isinstance(p, list) and all(map(scalar, p)))
                                               for p in params):
        raise QueryError("X-Modelog-Params: must be a JSON array of strings, numbers, booleans, nulls or lists "
                         "of them")
    return params


class QueryServer:
    """Serves SQL from ``store`` in a background thread; each request gets its own cursor.

    ``highwaters``: a callable returning the high watermark per (topic, partition) the projector's
    consumer saw (for the lag in ``/metrics``); the app sets it once its consumer exists.
    """

    def __init__(self, store: ViewStore, host: str = "127.0.0.1", port: int = 0,
                 highwaters: Callable[[], Mapping[tuple[str, int], int]] | None = None,
                 limits: QueryLimits | None = None) -> None:
        self.store = store
        self.limits = limits or QueryLimits()
        self.highwaters = highwaters
        self.ready = True  # the projector sets it False until its consumer has joined
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
            timeout = 60  # an idle kept-alive connection is closed after this many seconds
            disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall between

            def log_message(self, *args) -> None:  # quiet
                return None

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] == "/metrics":
                    return self._send(200, outer.metrics_text().encode(), metrics.CONTENT_TYPE)
                if self.path == "/ready":  # for readiness probes: 200 once the consumer joined, else 503
                    body = json.dumps({"ready": outer.ready}).encode()
                    return self._send(200 if outer.ready else 503, body, "application/json")
                if self.path != "/health":
                    return self._send(404, b'{"error": "not found"}', "application/json")
                pos = {f"{t}/{p}": o for (t, p), o in outer.store.positions().items()}
                self._send(200, json.dumps({"status": "ok", "ready": outer.ready, "positions": pos}).encode(),
                           "application/json")

            def do_POST(self) -> None:
                if self.path != "/sql":
                    return self._send(404, b'{"error": "not found"}', "application/json")
                length = int(self.headers.get("Content-Length", 0) or 0)
                if length > MAX_QUERY_BYTES:  # refused unread: the body is never held in memory
                    self.close_connection = True
                    return self._send(413, json.dumps({"error": f"query: must be at most {MAX_QUERY_BYTES} bytes "
                                                                f"of SQL (got {length})"}).encode(), "application/json")
                query = self.rfile.read(length).decode(errors="replace")
                cur = outer.store.reader()
                try:
                    table = arrow_result(cur, query, self.headers.get("X-Modelog-As-Of"),
                                         parse_params(self.headers.get("X-Modelog-Params")), outer.limits)
                except (QueryError, duckdb.Error) as exc:
                    return self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
                finally:
                    cur.close()
                sink = pa.BufferOutputStream()
                with pa.ipc.new_stream(sink, table.schema) as writer:
                    writer.write_table(table)
                self._send(200, sink.getvalue().to_pybytes(), "application/vnd.apache.arrow.stream")

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # a wildcard bind is reachable locally
        self.url = f"http://{shown}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="modelog-sql", daemon=True)

    def metrics_text(self) -> str:
        """The Prometheus exposition of the views (read on a reader cursor: never waits for the writer)."""
        cur = self.store.reader()
        try:
            def query(sql: str) -> list[dict]:
                rel = cur.execute(sql)
                names = [d[0] for d in rel.description]
                return [dict(zip(names, row)) for row in rel.fetchall()]

            try:
                highwaters = self.highwaters() if self.highwaters is not None else {}
            except Exception as exc:  # noqa: BLE001 -- e.g. the consumer mid-rebalance: no lag this scrape
                log.warning("metrics: no high watermarks this scrape (%s: %s)", type(exc).__name__, exc)
                highwaters = {}
            return metrics.collect(query, highwaters)
        finally:
            cur.close()

    def start(self) -> QueryServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
