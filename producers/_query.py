"""SQL over the views: ``modelog.sql(...)`` -> pandas, ``modelog.sql_arrow(...)`` -> Arrow.

DuckDB allows one writing process per file, and the running processor is it.
So while a processor runs, queries go to the SQL endpoint it serves on
127.0.0.1 (found through ``$MODELOG_HOME/processor.json``) and come back as
Arrow IPC; when none runs, the file is opened read-only here.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from ._config import Settings
from ._errors import QueryError

if TYPE_CHECKING:
    import pandas
    import pyarrow


def processor_file(settings: Settings) -> Path:
    return settings.home / "processor.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_processor(settings: Settings) -> dict | None:
    """The running processor serving ``settings.views_path``, or None."""
    path = processor_file(settings)
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if info.get("db") != str(settings.views_path) or not _pid_alive(int(info.get("pid", -1))):
        return None
    return info


def sql_arrow(query: str, settings: Settings | None = None) -> pyarrow.Table:
    """Run a read-only SQL query over the views; return an Arrow table. Raises QueryError."""
    settings = settings or Settings.load()
    info = running_processor(settings)
    if info and info.get("sql_url"):
        return _remote(info["sql_url"], query)
    return _local(settings.views_path, query)


def sql(query: str, settings: Settings | None = None) -> pandas.DataFrame:
    """Run a read-only SQL query over the views; return a pandas DataFrame.

    Example::

        modelog.sql("SELECT run_id, value FROM latest_metrics WHERE key = 'auc' ORDER BY value DESC")
    """
    return sql_arrow(query, settings).to_pandas()


def _remote(url: str, query: str) -> pyarrow.Table:
    import pyarrow as pa

    req = urllib.request.Request(url, data=query.encode(), method="POST", headers={"Content-Type": "text/plain"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            detail = exc.read().decode(errors="replace")
        try:
            detail = json.loads(detail)["error"]
        except (ValueError, KeyError):
            pass
        raise QueryError(detail) from None
    except urllib.error.URLError as exc:
        raise QueryError(f"processor SQL endpoint {url} unreachable: {exc.reason}") from exc
    return pa.ipc.open_stream(body).read_all()


def _local(path: Path, query: str) -> pyarrow.Table:
    import duckdb

    if not path.exists():
        raise QueryError(f"no views at {path} yet: start the processor (`modelog process`) or run `modelog rebuild`")
    from modelog.processors.query_server import arrow_result

    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise QueryError(f"cannot open {path} read-only ({exc}); is a processor starting up?") from exc
    try:
        return arrow_result(con, query)
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
    finally:
        con.close()


def projected_positions(settings: Settings) -> dict[tuple[str, int], int]:
    """Next offset the views hold per (topic, partition): from the running processor, else the file."""
    info = running_processor(settings)
    if info and info.get("health_url"):
        try:
            with urllib.request.urlopen(info["health_url"], timeout=5) as resp:
                data = json.loads(resp.read())
        except (urllib.error.URLError, ValueError) as exc:
            raise QueryError(f"processor health endpoint unreachable: {exc}") from exc
        out = {}
        for k, v in data["positions"].items():
            topic, _, part = k.rpartition("/")
            out[(topic, int(part))] = int(v)
        return out
    table = _local(settings.views_path, 'SELECT topic, "partition", next_offset FROM positions')
    return {(t, p): o for t, p, o in zip(*(table[c].to_pylist() for c in table.column_names))}


def wait_projected(settings: Settings, topic: str, offsets: dict[int, int], timeout: float = 30.0) -> float:
    """Block until the views hold every record up to ``offsets`` (partition -> last offset). Returns seconds waited."""
    import time

    start = time.monotonic()
    while True:
        pos = projected_positions(settings)
        if all(pos.get((topic, p), 0) > o for p, o in offsets.items()):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            missing = {p: o for p, o in offsets.items() if pos.get((topic, p), 0) <= o}
            raise QueryError(f"views did not catch up within {timeout:.0f}s (waiting for {topic} offsets {missing})")
        time.sleep(0.02)
