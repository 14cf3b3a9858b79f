"""SQL over the views: ``modelog.sql(...)`` -> pandas, ``modelog.sql_arrow(...)`` -> Arrow.

DuckDB allows one writing process per file, and the running processor is it.
So while a processor runs, queries go to the SQL endpoint it serves on
127.0.0.1 (found through ``$MODELOG_HOME/processor.json``) and come back as
Arrow IPC; when none runs, the file is opened read-only here.
"""

from __future__ import annotations

import atexit
import http.client
import json
import socket
import threading
import urllib.parse
import urllib.error
import urllib.request
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from modelog.wire.home import running_processor
from modelog.wire.settings import Settings
from modelog.wire.errors import QueryError

if TYPE_CHECKING:
    import pandas
    import pyarrow


def parse_as_of(value: str | datetime | None) -> str | None:
    """An ``as_of`` time as UTC ISO text. Naive times are UTC; 'Z' and offsets are honoured."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise QueryError(f"as_of: must be an ISO 8601 time such as 2026-11-01T12:00Z (got {value!r})") from None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat()


def sql_arrow(query: str, settings: Settings | None = None, *, as_of: str | datetime | None = None,
              params: list | tuple | None = None, cache: bool = True) -> pyarrow.Table:
    """Run a read-only SQL query over the views; return an Arrow table. Raises QueryError.

    ``as_of`` (ISO 8601 text or datetime; naive = UTC) answers with every view as it was at that
    instant, e.g. which model version was in production then. ``params`` are bound to the query's
    ``?`` placeholders (strings, numbers, booleans, None), never pasted into its text.

    Once the log is governed (``modelog init``), a running processor answers only what this principal may
    read (docs/security.md): the request is signed with its key (MODELOG_SIGNING_KEY or its key file), else
    carries MODELOG_TOKEN.

    A running processor keeps an answer until the views next change and gives it again for the same statement,
    parameters and scope (a statement reading the clock or chance is always run: decision 0028); ``cache=False``
    runs it even so (e.g. to time the statement itself).
    """
    return query_arrow(query, settings, as_of=as_of, params=params, cache=cache)


def query_arrow(query: str, settings: Settings | None = None, *, as_of: str | datetime | None = None,
                params: list | tuple | None = None, on_behalf_of: str | None = None,
                signer_principal: str | None = None, cache: bool = True) -> pyarrow.Table:
    """:func:`sql_arrow` for a process that reads for others (the HTTP server): ``on_behalf_of`` scopes the
    answer to that principal, whom this process authenticated; a processor accepts it from a request signed
    with ``signer_principal``'s key when that key has the ``delegate`` capability. Without a processor (the
    views file or the lake read in this process) the scope is applied here."""
    settings = settings or Settings.load()
    stamp = parse_as_of(as_of)
    bound = list(params) if params else None
    from modelog.processors.query_server import QueryLimits

    limits = QueryLimits.from_settings(settings)  # a processor enforces its own settings' limits
    if settings.lake_path is not None:  # any process may read the lake: no round trip to a processor
        return lake_reader(settings.lake_path, settings.artifact_options).query(query, stamp, bound, limits,
                                                                                 on_behalf_of)
    info = running_processor(settings)
    if info and info.get("sql_url"):
        return _remote(info["sql_url"], query, stamp, bound,
                       identity=lambda body, headers: _identity(settings, body, headers, on_behalf_of,
                                                                signer_principal), cache=cache)
    return _local(settings.views_path, query, stamp, bound, limits, settings.duckdb_memory_limit, on_behalf_of)


_signers: dict[tuple, object] = {}


def _identity(settings: Settings, body: bytes, headers: dict[str, str], on_behalf_of: str | None,
              signer_principal: str | None) -> dict[str, str]:
    """The headers saying who sends a SQL request (modelog.wire.sqlauth): signed with the key of
    ``signer_principal`` (default: this process's principal), else its API token, else none."""
    from modelog.wire.signing import signer_for
    from modelog.wire.sqlauth import sign_request

    principal = signer_principal or settings.principal
    key = (settings.signing_key if principal == settings.principal else None, str(settings.home), principal)
    signer = _signers.get(key)
    if signer is None:
        signer = signer_for(settings, principal)
        if signer is not None:
            _signers[key] = signer
    if signer is not None:
        return sign_request(signer, body, as_of=headers.get("X-Modelog-As-Of"),
                            params=headers.get("X-Modelog-Params"), on_behalf=on_behalf_of)
    if settings.token and not on_behalf_of:
        return {"Authorization": f"Bearer {settings.token}"}
    return {}


def sql(query: str, settings: Settings | None = None, *, as_of: str | datetime | None = None) -> pandas.DataFrame:
    """Run a read-only SQL query over the views; return a pandas DataFrame.

    Example::

        modelog.sql("SELECT run_id, value FROM latest_metrics WHERE key = 'auc' ORDER BY value DESC")
        modelog.sql("SELECT version FROM model_versions WHERE stage = 'production'", as_of="2026-11-01T12:00Z")
    """
    return sql_arrow(query, settings, as_of=as_of).to_pandas()


_connections = threading.local()  # one keep-alive connection per thread and endpoint


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST over a kept-alive HTTP/1.1 connection (reconnects once if the server closed it)."""
    parts = urllib.parse.urlsplit(url)
    cache = _connections.__dict__.setdefault("by_netloc", {})
    for attempt in (0, 1):
        conn = cache.get(parts.netloc)
        if conn is None:
            conn = cache[parts.netloc] = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn.request("POST", parts.path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (http.client.HTTPException, ConnectionError, OSError):
            conn.close()
            cache.pop(parts.netloc, None)
            if attempt:
                raise
    raise AssertionError("unreachable")


@atexit.register
def close_connections() -> None:
    """Close this thread's kept-alive connections to SQL endpoints (at exit; tests call it between tests,
    as each test's processor listens on a port of its own)."""
    for conn in _connections.__dict__.pop("by_netloc", {}).values():
        conn.close()


def _remote(url: str, query: str, as_of: str | None = None, params: list | None = None,
            identity=None, cache: bool = True) -> pyarrow.Table:
    import pyarrow as pa

    headers = {"Content-Type": "text/plain"}
    if not cache:
        headers["Cache-Control"] = "no-cache"
    if as_of:
        headers["X-Modelog-As-Of"] = as_of
    if params:
        headers["X-Modelog-Params"] = json.dumps(params)
    payload = query.encode()
    if identity is not None:
        headers.update(identity(payload, headers))
    try:
        status, body = _post(url, payload, headers)
    except OSError as exc:
        raise QueryError(f"processor SQL endpoint {url} unreachable: {exc}") from exc
    if status != 200:
        detail = body.decode(errors="replace")
        try:
            detail = json.loads(detail)["error"]
        except (ValueError, KeyError):
            pass
        raise QueryError(detail)
    return pa.ipc.open_stream(body).read_all()


def _local(path: Path, query: str, as_of: str | None = None, params: list | None = None, limits=None,
           memory_limit: str | None = None, on_behalf_of: str | None = None) -> pyarrow.Table:
    import duckdb

    if not path.exists():
        raise QueryError(f"no views at {path} yet: start the processor (`modelog process`) or run `modelog rebuild`")
    from modelog.processors.query_server import arrow_result
    from modelog.processors.scope import read_scope

    try:
        con = duckdb.connect(str(path), read_only=True,
                             config={"memory_limit": memory_limit} if memory_limit else {})
    except duckdb.Error as exc:
        raise QueryError(f"cannot open {path} read-only ({exc}); is a processor starting up?") from exc
    try:
        scope = read_scope(con, on_behalf_of) if on_behalf_of is not None else None
        return arrow_result(con, query, as_of, params, limits, scope)
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
    finally:
        con.close()


MAX_READERS = 4  # lakes this process keeps a reader of; the least recently used one beyond is closed
_readers: OrderedDict[Path | str, object] = OrderedDict()
_readers_lock = threading.Lock()


def lake_reader(path: Path | str, aws=None):
    """This process's reader of the lake at ``path`` (kept: it refreshes itself when the lake changes).

    At most ``MAX_READERS`` are kept (each holds an in-memory DuckDB connection); the least recently
    used one is closed when another lake is read. :func:`close_readers` closes them all (at exit).
    """
    from modelog.processors.lake import Lake, LakeReader

    if path not in _readers and not Lake(path, aws).exists():
        raise QueryError(f"no lake at {path} yet: start the workers (`modelog process --workers N`) first")
    evicted = []
    with _readers_lock:
        reader = _readers.get(path)
        if reader is None:
            reader = _readers[path] = LakeReader(path, aws)
        _readers.move_to_end(path)
        while len(_readers) > MAX_READERS:
            evicted.append(_readers.popitem(last=False)[1])
    for old in evicted:
        old.close()
    return reader


@atexit.register
def close_readers() -> None:
    """Close every kept lake reader (registered at exit; tests call it between tests)."""
    with _readers_lock:
        readers = list(_readers.values())
        _readers.clear()
    for reader in readers:
        reader.close()


def projected_positions(settings: Settings) -> dict[tuple[str, int], int]:
    """Next offset the views hold per (topic, partition): from the lake's positions table, the running
    processor, else the file."""
    if settings.lake_path is not None:
        from modelog.processors.lake import lake_for

        return lake_for(settings).positions()
    info = running_processor(settings)
    if info and info.get("health_url"):
        try:
            with urllib.request.urlopen(info["health_url"], timeout=5) as resp:
                data = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:  # OSError: a read that timed out
            raise QueryError(f"processor health endpoint unreachable: {exc}") from exc
        out = {}
        for k, v in data["positions"].items():
            topic, _, part = k.rpartition("/")
            out[(topic, int(part))] = int(v)
        return out
    table = _local(settings.views_path, 'SELECT topic, "partition", next_offset FROM positions')
    return {(t, p): o for t, p, o in zip(*(table[c].to_pylist() for c in table.column_names))}


def wait_projected(settings: Settings, offsets: dict[tuple[str, int], int], timeout: float = 30.0,
                   positions=None, interval: float = 0.02) -> float:
    """Block until the views hold every record up to ``offsets`` ((topic, partition) -> last offset).

    ``positions`` (default :func:`projected_positions`) reads what the views hold, e.g. through the
    HTTP API. Returns the seconds waited; raises QueryError on timeout.
    """
    import time

    read = positions or projected_positions
    start = time.monotonic()
    while True:
        try:
            pos = read(settings)
        except QueryError:  # a processor too busy to answer, or restarting: ask again until the deadline
            if time.monotonic() - start > timeout:
                raise
            time.sleep(interval)
            continue
        if all(pos.get(tp, 0) > o for tp, o in offsets.items()):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            missing = {f"{t}/{p}": o for (t, p), o in offsets.items() if pos.get((t, p), 0) <= o}
            raise QueryError(f"views did not catch up within {timeout:.0f}s (waiting for offsets {missing})")
        time.sleep(interval)
