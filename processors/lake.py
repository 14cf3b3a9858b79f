"""The lake: where several projector workers publish their shards so that one set of views reads them all.

DuckDB allows one writing process per file, and no other process may even read a file while it is
being written. With several workers (decision 0009) each (topic, partition) of the log is projected
into a *shard*: a DuckDB file of its own, written by whichever worker the consumer group gave that
partition. A shard publishes its new rows to the lake as Parquet files, which any number of processes
can read at once, and describes what it has published in a *manifest*::

    <lake>/instance                       the lake's id (the workers' consumer group is derived from it)
    <lake>/shards/<shard>.duckdb          a shard's DuckDB file (positions, dedup, rows; one writer)
    <lake>/manifests/<shard>.json         what the shard has published: files per table, positions
    <lake>/data/<table>/<shard>/<from>-<to>.parquet    rows [from, to) of the shard's table

Base tables are append-only, so a table's new rows are the row ids past what the manifest says was
published. Files are written under their final name's ``.tmp`` and renamed; the manifest is replaced
atomically afterwards, so readers only ever see whole files, and a crash in between re-exports the
same rows under the same name. Small files are merged (``plan_merge``); files a manifest no longer
names are deleted after a grace period, long enough for a reader holding the previous manifest.

This module holds the layout and the pure rules; ``shards.py`` writes, ``LakeReader`` reads.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from modelog.wire.errors import QueryError

MERGE_AFTER_FILES = 16  # a table's unsealed tail of files is merged into one when it grows past this
SEAL_BYTES = 64 * 1024 * 1024  # a file this large is left alone by merges
RETIRED_GRACE_S = 30.0  # files replaced by a merge are deleted this long after (readers of the old manifest)


def shard_id(topic: str, partition: int) -> str:
    return f"{topic}.{partition}"


@dataclass
class Manifest:
    """What one shard has published. ``tables``: table -> (rows published, [(file name, bytes), ...])."""

    shard: str
    topic: str
    partition: int
    positions: dict[str, int] = field(default_factory=dict)  # "topic/partition" -> next offset
    tables: dict[str, tuple[int, list[tuple[str, int]]]] = field(default_factory=dict)
    retired: list[tuple[str, float]] = field(default_factory=list)  # (path relative to the lake, when)
    published_at: float = 0.0

    def rows(self, table: str) -> int:
        return self.tables.get(table, (0, []))[0]

    def files(self, table: str) -> list[tuple[str, int]]:
        return self.tables.get(table, (0, []))[1]

    def to_json(self) -> str:
        return json.dumps({
            "shard": self.shard, "topic": self.topic, "partition": self.partition, "positions": self.positions,
            "tables": {t: {"rows": n, "files": [list(f) for f in files]} for t, (n, files) in self.tables.items()},
            "retired": [list(r) for r in self.retired], "published_at": self.published_at,
        }, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        d = json.loads(text)
        return cls(d["shard"], d["topic"], int(d["partition"]), {k: int(v) for k, v in d["positions"].items()},
                   {t: (int(v["rows"]), [(str(n), int(s)) for n, s in v["files"]]) for t, v in d["tables"].items()},
                   [(str(p), float(w)) for p, w in d.get("retired", [])], float(d.get("published_at", 0.0)))


def file_name(start: int, end: int) -> str:
    """The file holding rows [start, end) of a shard's table: deterministic, so re-exports overwrite."""
    return f"{start:012d}-{end:012d}.parquet"


def plan_merge(files: list[tuple[str, int]], merge_after: int = MERGE_AFTER_FILES,
               seal_bytes: int = SEAL_BYTES) -> list[str]:
    """The files to merge into one, or []: the unsealed tail (the files after the last one of at least
    ``seal_bytes``), once it holds more than ``merge_after`` files. Each row is so rewritten a bounded
    number of times before its file is sealed, and a table keeps O(rows / seal_bytes + merge_after) files."""
    tail: list[str] = []
    for name, size in files:
        tail = [] if size >= seal_bytes else tail + [name]
    return tail if len(tail) > merge_after else []


def merged_name(names: list[str]) -> str:
    first, last = names[0].split("-"), names[-1].split("-")
    return f"{first[0]}-{last[1]}"


def due_for_deletion(retired: list[tuple[str, float]], now: float,
                     grace: float = RETIRED_GRACE_S) -> tuple[list[str], list[tuple[str, float]]]:
    """Split retired files into (delete now, keep for later)."""
    return [p for p, t in retired if now - t >= grace], [(p, t) for p, t in retired if now - t < grace]


class Lake:
    """Paths and manifests of one lake directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @property
    def instance_id(self) -> str:
        """The lake's id, created on first use (a fresh lake means a fresh consumer group: a full replay)."""
        path = self.root / "instance"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"instance.{os.getpid()}.tmp")
            tmp.write_text(uuid.uuid4().hex)
            try:
                os.link(tmp, path)  # first writer wins; others read its id
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
            return path.read_text().strip()

    def shard_path(self, shard: str) -> Path:
        return self.root / "shards" / f"{shard}.duckdb"

    def manifest_path(self, shard: str) -> Path:
        return self.root / "manifests" / f"{shard}.json"

    def data_dir(self, table: str, shard: str) -> Path:
        return self.root / "data" / table / shard

    def read_manifest(self, shard: str) -> Manifest | None:
        try:
            return Manifest.from_json(self.manifest_path(shard).read_text())
        except FileNotFoundError:
            return None

    def write_manifest(self, manifest: Manifest) -> None:
        path = self.manifest_path(manifest.shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(manifest.to_json())
        os.replace(tmp, path)

    def manifests(self) -> list[Manifest]:
        out = []
        for path in sorted((self.root / "manifests").glob("*.json")):
            try:
                out.append(Manifest.from_json(path.read_text()))
            except FileNotFoundError:  # replaced between glob and read: os.replace keeps the name, so rare
                continue
        return out

    def signature(self) -> tuple:
        """Changes whenever any manifest is replaced (cheap: one stat per shard)."""
        out = []
        for path in sorted((self.root / "manifests").glob("*.json")):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            out.append((path.name, st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(out)

    def positions(self) -> dict[tuple[str, int], int]:
        """Next offset per (topic, partition) whose records the lake shows."""
        out: dict[tuple[str, int], int] = {}
        for m in self.manifests():
            for key, offset in m.positions.items():
                topic, _, part = key.rpartition("/")
                out[(topic, int(part))] = offset
        return out


def base_view_sql(lake: Lake, table: str, manifests: Iterable[Manifest], empty: str, schema: str = "main",
                  extra: str | None = None) -> str:
    """``CREATE OR REPLACE VIEW <schema>.<table>`` over the published files of ``manifests`` (plus the
    relation ``extra``, e.g. a shard's own live table), typed by the empty table ``empty``."""
    files = [str(lake.data_dir(table, m.shard) / name) for m in manifests for name, _ in m.files(table)]
    parts = [f"SELECT * FROM {empty}"]
    if extra:
        parts.append(f"SELECT * FROM {extra}")
    if files:
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        parts.append(f"SELECT * FROM read_parquet([{listed}], union_by_name = true)")
    return f"CREATE OR REPLACE VIEW {schema}.{table} AS " + " UNION ALL BY NAME ".join(parts)


class LakeReader:
    """The views over a lake, in an in-memory DuckDB of this process; any number may read one lake.

    ``reader()`` refreshes the base views when a manifest changed and returns a cursor (as
    ``ViewStore.reader`` does), so the query server and ``modelog.sql`` work on it unchanged.
    """

    def __init__(self, root: Path | str) -> None:
        from . import current
        from .store import views_sql
        from .tables import TABLES, ddl

        self.lake = Lake(root)
        self.con = duckdb.connect()
        self.con.execute("SET GLOBAL TimeZone = 'UTC'")
        self._lock = threading.Lock()
        self._signature: tuple | None = None
        self.con.execute("CREATE SCHEMA IF NOT EXISTS lake_empty")
        for table in TABLES:
            self.con.execute(ddl(table).replace(f"TABLE IF NOT EXISTS {table}", f"TABLE IF NOT EXISTS lake_empty.{table}"))
            self.con.execute(f"CREATE VIEW {table} AS SELECT * FROM lake_empty.{table}")
        self.con.execute(current.views_sql())  # the lake has the facts; current state is computed from them
        self.con.execute(views_sql())
        self.refresh()

    def refresh(self) -> None:
        from .tables import TABLES

        with self._lock:
            sig = self.lake.signature()
            if sig == self._signature:
                return
            manifests = self.lake.manifests()
            for table in TABLES:
                self.con.execute(base_view_sql(self.lake, table, manifests, f"lake_empty.{table}"))
            self._signature = sig

    def reader(self) -> duckdb.DuckDBPyConnection:
        self.refresh()
        return self.con.cursor()

    def positions(self) -> dict[tuple[str, int], int]:
        return self.lake.positions()

    def query(self, sql: str, as_of: str | None = None, params: list | None = None, limits=None,
              on_behalf_of: str | None = None):
        """Run one read-only statement; an Arrow table. Retries once if a merge removed a file mid-read.
        ``on_behalf_of``: answer with what that principal may read (processors/scope.py)."""
        from .query_server import arrow_result
        from .scope import read_scope

        for attempt in (0, 1):
            cur = self.reader()
            try:
                scope = read_scope(cur, on_behalf_of) if on_behalf_of is not None else None
                return arrow_result(cur, sql, as_of, params, limits, scope)
            except duckdb.IOException as exc:
                if attempt:
                    raise QueryError(str(exc)) from exc
                time.sleep(0.05)
            except duckdb.Error as exc:
                raise QueryError(str(exc)) from exc
            finally:
                cur.close()

    def close(self) -> None:
        self.con.close()
