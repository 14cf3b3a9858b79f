"""The processor's SQL endpoint: read-only queries over HTTP on 127.0.0.1, answers as Arrow IPC.

    POST /sql       body: one SQL statement (SELECT, WITH, EXPLAIN, DESCRIBE, SHOW, PRAGMA show_tables, ...)
                    header X-Modelog-As-Of (optional): answer with the views as they were at that UTC time
                    header X-Modelog-Params (optional): JSON array bound to the statement's ? placeholders
                    once the log is governed (modelog init), who asks: X-Modelog-Key-Id, X-Modelog-Date and
                    X-Modelog-Signature (a request signed with a registered key; X-Modelog-On-Behalf-Of from a
                    delegate key), or Authorization: Bearer <API token> (modelog.wire.sqlauth); the answer
                    holds only what that principal may read (processors/scope.py, decision 0022)
                    header Cache-Control: no-cache (optional): run the statement even if its answer is kept
                    200: Arrow IPC stream, header X-Modelog-Cache: hit | miss | bypass (an answer is kept
                    until the views next change, for the same statement, parameters and scope: decision
                    0028, processors/result_cache.py); 400: {"error": "..."}; 401: {"error": "..."} (who
                    asks is not proven)
    GET  /health    {"status": "ok", "ready": bool, "positions": {...}}   (200 while the process lives)
    GET  /ready     200 once the projector's consumer has joined its group, 503 before (readiness probes)
    GET  /metrics   Prometheus text format 0.0.4 (drift, alerts, predictions, projector lag; see metrics.py)
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import pyarrow as pa

from modelog.wire import sqlauth
from modelog.wire.errors import QueryError, ValidationError
from modelog.wire.sqlauth import AuthError
from modelog.wire.tokens import parse_token

from . import metrics
from .result_cache import ResultCache, cacheable, unstable_names
from .scope import Scope, governance_version, read_scope
from .watchdog import WATCHDOG
from .sql_guard import MAX_QUERY_BYTES, check_query
from .store import ViewStore

log = logging.getLogger(__name__)


def check_read_only(con: duckdb.DuckDBPyConnection, query: str, scoped: bool = False) -> None:
    """Raise QueryError unless ``query`` is one read-only statement over the views (see sql_guard)."""
    check_query(con, query, scoped)


def as_of_views(con: duckdb.DuckDBPyConnection, as_of: str) -> None:
    """Make ``con`` (a connection of its own) see the views as they were at ``as_of`` (UTC).

    Each base table is shadowed by a temporary view holding only its rows stamped at or before
    ``as_of`` (its first timestamp column: occurred_at, registered_at, decided_at, ...), and every view
    is re-created as a temporary view over those. Connection-local; the file is not touched.
    """
    shadow_views(con, as_of=as_of)


def shadow_views(con: duckdb.DuckDBPyConnection, as_of: str | None = None, scope: Scope | None = None) -> None:
    """Shadow every base table by a TEMP view of its rows up to ``as_of`` and within ``scope`` (either may be
    None), then re-create every view over them. Connection-local; the file is not touched."""
    from . import current
    from . import scope as scoping
    from .store import views_sql
    from .tables import AS_OF_SHADOWS, TABLES, TS

    if as_of is None and scope is None:
        return
    ts = None
    if as_of is not None:
        try:
            ts = con.execute("SELECT CAST(? AS TIMESTAMP)", [as_of]).fetchall()[0][0]
        except duckdb.Error as exc:
            raise QueryError(f"as_of: must be an ISO 8601 time, e.g. 2026-11-01T12:00:00 (got {as_of!r})") from exc
    db = con.execute("SELECT current_database()").fetchall()[0][0]
    if scope is not None:
        for name, col, values in (("_scope_experiments", "experiment", sorted(scope.experiments)),
                                  ("_scope_models", "model", sorted(scope.models)),
                                  ("_scope_who", "principal", [scope.principal])):
            con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT unnest(?::VARCHAR[]) AS {col}", [values])
        for statement in scoping.prelude_sql(db):
            con.execute(statement)

    def where(table: str, schema) -> str:
        parts = []
        if ts is not None:
            col = next((f.name for f in schema if f.type == TS), None)
            if col:
                parts.append(f'"{col}" <= TIMESTAMP \'{ts.isoformat(sep=" ")}\'')
        if scope is not None:
            parts.append("(" + (scoping.EVENTS_FILTER if table == "log_events"
                                else scoping.FILTERS.get(table, "false")) + ")")
        return " WHERE " + " AND ".join(parts) if parts else ""

    for table, schema in TABLES.items():
        if table == "log_events" or (ts is not None and table in AS_OF_SHADOWS):
            continue  # derived tables: re-derived from their (already shadowed) source; events: last
        con.execute(f'CREATE OR REPLACE TEMP VIEW {table} AS SELECT * FROM "{db}".main.{table}' + where(table, schema))
    if ts is not None:
        for table, select in AS_OF_SHADOWS.items():
            con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS {select}")
    # the audit rows: after every other shadow, as a scope reads them off the readable rows
    if scope is not None:
        con.execute(scoping.event_keys_sql(db))
    con.execute(f'CREATE OR REPLACE TEMP VIEW log_events AS SELECT * FROM "{db}".main.log_events'
                + where("log_events", TABLES["log_events"]))
    if ts is not None:
        con.execute(current.views_sql(temp=True))  # the current-state tables, from the shadowed facts
    else:  # scope alone: a run's current rows are a function of its own facts, so filtering them by run is the
        # same as re-deriving them from the filtered facts, and costs nothing at query time
        for c in current.CURRENT.values():
            con.execute(f'CREATE OR REPLACE TEMP VIEW {c.name} AS SELECT * FROM "{db}".main.{c.name} '
                        f"WHERE {scoping.CURRENT_FILTER}")
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


def stream(con: duckdb.DuckDBPyConnection, query: str, params: list | None = None) -> pa.RecordBatchReader | None:
    """One statement's answer as a stream of Arrow batches (None: the statement answers nothing).

    Bound and planned once where the DuckDB at hand lets us: ``con.sql()`` binds the statement to build a
    relation and ``to_arrow_reader`` binds and plans it again to run it (~1.5 ms of a ~6 ms three-way join
    here); DuckDB 2's ``_submit`` -- what ``to_arrow_reader`` calls underneath -- runs the text directly,
    streaming like the relation does (the row limit is still checked batch by batch). It is not public
    API, so any other DuckDB takes the public path, with the same answer (tests compare both)."""
    submit = getattr(con, "_submit", None)
    if submit is not None:
        try:
            result = submit(query, params, "stream", BATCH_ROWS)
            return result.arrow_reader()
        except (TypeError, AttributeError):  # another DuckDB's private signature: the public path below
            pass
    rel = con.sql(query, params=params) if params else con.sql(query)
    return None if rel is None else rel.to_arrow_reader(BATCH_ROWS)


def arrow_result(con: duckdb.DuckDBPyConnection, query: str, as_of: str | None = None,
                 params: list | None = None, limits: QueryLimits | None = None, scope: Scope | None = None,
                 shadowed: bool = False, replacements_off: bool = False) -> pa.Table:
    """One read-only statement's answer. ``params`` binds its ``?`` placeholders (values never pasted).
    ``scope``: answer with only what it may read (``shadowed``: ``con`` already has the scope's shadows).
    ``replacements_off``: ``con`` is a cursor of a store that set ``python_enable_replacements = false`` GLOBAL
    (one statement less per request). Raises QueryError when the statement is refused by the sandbox, runs longer than ``limits.timeout_s``
    (it is interrupted), answers more than ``limits.max_rows`` rows, or runs out of memory."""
    limits = limits or QueryLimits()
    limited = scope is not None and not scope.everything
    check_read_only(con, query, limited)
    deadline = WATCHDOG.arm(limits.timeout_s, con.interrupt)
    try:
        if as_of or (limited and not shadowed):
            shadow_views(con, as_of=as_of or None, scope=scope if limited else None)
        # a name in FROM never resolves to a Python object (a DataFrame) of this process: views and tables only
        if not replacements_off:
            con.execute("SET python_enable_replacements = false")
        reader = stream(con, query, params)
        if reader is None:
            return pa.table({})
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
        WATCHDOG.disarm(deadline)


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


def identify(con: duckdb.DuckDBPyConnection, headers: Mapping[str, str], body: bytes) -> tuple[str, bool]:
    """(principal, reads everything) of a request to a governed log: a signed request (its key in
    ``signing_keys``) or an API token (``api_tokens``); raises AuthError when neither proves who asks.
    A delegate key (the HTTP server's) speaking for itself reads everything: it authenticates tokens."""
    h = {k.lower(): v for k, v in headers.items()}
    db = con.execute("SELECT current_database()").fetchall()[0][0]
    now = time.time()
    key_id = h.get(sqlauth.KEY_ID.lower())
    if key_id:
        rel = con.execute(f'SELECT principal, public_key, capabilities, status FROM "{db}".main.signing_keys '
                          "WHERE key_id = ?", [key_id])
        rows = [dict(zip([d[0] for d in rel.description], r)) for r in rel.fetchall()]
        key = rows[0] if rows else None
        principal = sqlauth.verify_request(headers, body, key, now)
        delegate_self = (not h.get(sqlauth.ON_BEHALF.lower())
                         and sqlauth.DELEGATE in (key.get("capabilities") or ()))  # type: ignore[union-attr]
        return principal, delegate_self
    scheme, _, token = h.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        token = token.strip()
        try:
            token_id = parse_token(token)
        except ValidationError:
            raise sqlauth.AuthError("Authorization: malformed token, expected mlg_<id>_<secret>") from None
        rel = con.execute(f'SELECT * FROM "{db}".main.api_tokens WHERE token_id = ?', [token_id])
        rows = [dict(zip([d[0] for d in rel.description], r)) for r in rel.fetchall()]
        principal, _, why = sqlauth.token_verdict(token, rows[0] if rows else None, now)
        if principal is None:
            raise sqlauth.AuthError(f"Authorization: {why}")
        return principal, False
    raise sqlauth.AuthError("the log is governed (modelog init): the SQL endpoint answers requests signed with a "
                            "registered key (X-Modelog-Key-Id, X-Modelog-Signature; `modelog sql` signs with "
                            "MODELOG_SIGNING_KEY or $MODELOG_HOME/keys/<principal>.key) or carrying an API token "
                            "(Authorization: Bearer, MODELOG_TOKEN)")


class ScopedReaders:
    """Connections that see one scope: built once per (scope, grants version), reused by later requests.

    A scoped reader is a cursor of the store with every base table shadowed for its scope (``shadow_views``);
    creating the shadows costs tens of milliseconds, so idle ones are kept (at most ``per_scope`` per scope,
    ``max_scopes`` scopes: beyond, all are closed). A change of grants or keys changes the version, so a
    scope is read again and its readers rebuilt."""

    def __init__(self, store, per_scope: int = 4, max_scopes: int = 64) -> None:
        self.store = store
        self.per_scope = per_scope
        self.max_scopes = max_scopes
        self._scopes: dict[tuple[str, int], Scope] = {}
        self._idle: dict[tuple, list] = {}
        self._opened = getattr(store, "opened", 0)
        self._lock = threading.Lock()

    def scope(self, con, principal: str, version: int) -> Scope:
        hit = self._scopes.get((principal, version))
        if hit is None:
            hit = read_scope(con, principal)
            with self._lock:
                if len(self._scopes) > 10_000:
                    self._scopes.clear()
                self._scopes[(principal, version)] = hit
        return hit

    @contextlib.contextmanager
    def reader(self, scope: Scope, version: int):
        key = (scope.key, version)
        opened = getattr(self.store, "opened", 0)
        stale: list = []
        with self._lock:
            if opened != self._opened:  # the store opened its file again: the kept cursors are of the old one
                stale = [c for pool in self._idle.values() for c in pool]
                self._idle.clear()
                self._opened = opened
            idle = self._idle.get(key)
            cur = idle.pop() if idle else None
        for c in stale:
            with contextlib.suppress(duckdb.Error):
                c.close()
        if cur is None:
            cur = self.store.reader()
            try:
                shadow_views(cur, scope=scope)
            except BaseException:
                cur.close()
                raise
        ok = False
        try:
            yield cur
            ok = True
        finally:
            keep = False
            if ok and getattr(self.store, "opened", 0) == opened:  # else it is a cursor of the old file
                with self._lock:
                    if key not in self._idle and len(self._idle) >= self.max_scopes:
                        for old in self._idle.values():
                            for c in old:
                                c.close()
                        self._idle.clear()
                    pool = self._idle.setdefault(key, [])
                    if len(pool) < self.per_scope:
                        pool.append(cur)
                        keep = True
            if not keep:
                cur.close()


def store_governance(store, cur) -> tuple[bool, int]:
    """(governed, grants version) of ``store``'s committed views: kept by a store that can tell when it changes
    (``ViewStore.governance``), else read through ``cur``."""
    kept = getattr(store, "governance", None)
    return kept(cur) if kept is not None else governance_version(cur)


CACHE_HEADER = "X-Modelog-Cache"  # on every answer: hit, miss or bypass (processors/result_cache.py)
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024  # MODELOG_SQL_CACHE_MB's default


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


class QueryServer:
    """Serves SQL from ``store`` in a background thread; each request gets its own cursor.

    ``highwaters``: a callable returning the high watermark per (topic, partition) the projector's
    consumer saw (for the lag in ``/metrics``); the app sets it once its consumer exists.
    """

    def __init__(self, store: ViewStore, host: str = "127.0.0.1", port: int = 0,
                 highwaters: Callable[[], Mapping[tuple[str, int], int]] | None = None,
                 limits: QueryLimits | None = None, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.store = store
        self.limits = limits or QueryLimits()
        self.highwaters = highwaters
        self.ready = True  # the projector sets it False until its consumer has joined
        self.scopes = ScopedReaders(store)
        # answers kept while the views are unchanged: a store that counts its commits (ViewStore.generation)
        self.cache: ResultCache | None = None
        self._unstable: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
        if cache_bytes > 0 and isinstance(getattr(store, "generation", None), int):
            cur = store.reader()
            try:
                self._unstable = unstable_names(cur)
            finally:
                cur.close()
            self.cache = ResultCache(cache_bytes)
            store.on_commit.append(self.cache.advance)  # older answers dropped at once (an erasure among them)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
            timeout = 60  # an idle kept-alive connection is closed after this many seconds
            disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall between

            def log_message(self, *args) -> None:  # quiet
                return None

            def _send(self, code: int, body: bytes, ctype: str, extra: Mapping[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
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
                body = self.rfile.read(length)
                as_of = self.headers.get("X-Modelog-As-Of")
                fresh = "no-cache" in self.headers.get("Cache-Control", "").lower()
                try:
                    data, how = outer.respond(body, dict(self.headers.items()), as_of,
                                              parse_params(self.headers.get("X-Modelog-Params")), fresh)
                except AuthError as exc:
                    return self._send(401, json.dumps({"error": str(exc)}).encode(), "application/json")
                except (QueryError, duckdb.Error) as exc:
                    return self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
                self._send(200, data, "application/vnd.apache.arrow.stream", {CACHE_HEADER: how})

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # a wildcard bind is reachable locally
        self.url = f"http://{shown}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="modelog-sql", daemon=True)

    def answer(self, body: bytes, headers: Mapping[str, str], as_of: str | None, params: list | None) -> pa.Table:
        """The answer to one request: its sender identified (raises AuthError), its statement run within the
        sender's read scope (processors/scope.py)."""
        cur = self.store.reader()
        try:
            scope, version = self._scope(cur, headers, body)
            return self._run(cur, body.decode(), as_of, params, scope, version)
        finally:
            cur.close()

    def respond(self, body: bytes, headers: Mapping[str, str], as_of: str | None, params: list | None,
                fresh: bool = False) -> tuple[bytes, str]:
        """The answer as an Arrow IPC stream, and how it was had: ``hit`` (kept since the views last changed),
        ``miss`` (run, and kept) or ``bypass`` (run, not kept: ``fresh``, ``as_of``, a statement that reads the
        clock, chance or the engine's state, or no cache). The sender is identified first either way."""
        query = body.decode()
        if self.cache is None or fresh or as_of or not cacheable(query, *self._unstable):
            return _ipc(self.answer(body, headers, as_of, params)), "bypass"
        generation = self.store.generation  # before anything is read: what is kept is at least this new
        params_key = json.dumps(params) if params else None
        known = getattr(self.store, "governance_known", lambda: None)()
        if known is not None and not known[0]:  # not governed (everyone reads all): no cursor to find a hit
            hit = self.cache.get(generation, (("*",), query, params_key))
            if hit is not None:
                return hit, "hit"
        cur = self.store.reader()
        try:
            scope, version = self._scope(cur, headers, body)
            key = (scope.key if scope is not None else ("*",), query, params_key)
            hit = self.cache.get(generation, key)
            if hit is not None:
                return hit, "hit"
            data = _ipc(self._run(cur, query, None, params, scope, version))
        finally:
            cur.close()
        self.cache.put(generation, key, data)
        return data, "miss"

    def _scope(self, cur, headers: Mapping[str, str], body: bytes) -> tuple[Scope | None, int]:
        """(the sender's scope, grants version); scope None before the log is governed (everyone reads all).
        Raises AuthError when the log is governed and the request does not prove who sends it."""
        governed, version = store_governance(self.store, cur)
        if not governed:  # a local install before `modelog init`: everyone reads everything, as before
            return None, version
        who, everything = identify(cur, headers, body)
        return (Scope(who, everything=True) if everything else self.scopes.scope(cur, who, version)), version

    def _run(self, cur, query: str, as_of: str | None, params: list | None, scope: Scope | None,
             version: int) -> pa.Table:
        off = getattr(self.store, "replacements_off", False)
        if scope is None or scope.everything or as_of:
            return arrow_result(cur, query, as_of, params, self.limits, scope, replacements_off=off)
        with self.scopes.reader(scope, version) as scoped:
            return arrow_result(scoped, query, None, params, self.limits, scope, shadowed=True, replacements_off=off)

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
