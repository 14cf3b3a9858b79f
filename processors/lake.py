"""The lake: Delta Lake tables, on a local path or any S3-compatible store, that several projector workers
publish their shards to so that one set of views reads them all (decisions 0009, 0024).

DuckDB allows one writing process per file, and no other process may even read a file while it is
being written. With several workers each (topic, partition) of the log is projected into a *shard*: a
DuckDB file of its own, private to the worker the consumer group gave that partition (``shards.py``).
A shard publishes its new rows to the lake, one Delta table per base table::

    <lake>/<table>/                 a Delta table: the table's columns + ``lake_shard`` (which shard wrote the row)
    <lake>/_positions/              a Delta table: (shard, topic, partition, next_offset, published_at)

``<lake>`` is ``MODELOG_LAKE``: a directory, or ``s3://bucket/prefix`` (endpoint and credentials from the
standard ``AWS_*`` variables). delta-rs commits with a conditional write (``If-None-Match: *`` on S3, a
hard link on a disk): two writers that race for one table version cannot both win, so commits are atomic
without a lock service or a disk the workers share, and any engine that reads Delta (Spark, Trino, DuckDB,
Polars, pandas through ``deltalake``) reads the base tables.

Exactly once: each append carries a Delta *application transaction* ``(shard, rows published)`` in the
same commit, so a shard that crashed after a commit reads back how far it got instead of appending twice.
Positions are appended to ``_positions`` after the data, so a reader that sees a position sees the rows
below it. ``_positions``' table id is the lake's id (a fresh lake: a fresh consumer group, a full replay).

This module holds the layout, the writes and ``LakeReader``; ``shards.py`` decides what to publish.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa

from modelog.wire.errors import ConfigError, QueryError

log = logging.getLogger("modelog.processor")

POSITIONS = "_positions"
SHARD_COLUMN = "lake_shard"
POSITIONS_SCHEMA = pa.schema([("shard", pa.string()), ("topic", pa.string()), ("partition", pa.int32()),
                              ("next_offset", pa.int64()), ("published_at", pa.timestamp("us", tz="UTC"))])
COMPACT_EVERY = 200  # a shard compacts a table (and _positions) after this many of its own commits to it
VACUUM_HOURS = 1  # files a compaction replaced are deleted this long after (readers of an older version)

# the standard AWS_* settings (Settings.artifact_options, obstore's names) -> delta-rs storage options
_DELTA_AWS = {"endpoint": "AWS_ENDPOINT_URL", "access_key_id": "AWS_ACCESS_KEY_ID",
              "secret_access_key": "AWS_SECRET_ACCESS_KEY", "session_token": "AWS_SESSION_TOKEN",
              "region": "AWS_REGION"}


def shard_id(topic: str, partition: int) -> str:
    return f"{topic}.{partition}"


def is_remote(uri: str | Path) -> bool:
    return str(uri).startswith("s3://")


def normalize(uri: str | Path) -> str:
    """``s3://bucket/prefix`` as given (no trailing slash); a path or ``file://`` URI as an absolute path."""
    text = str(uri)
    if text.startswith("s3://"):
        parts = urlsplit(text)
        if not parts.netloc:
            raise ConfigError(f"MODELOG_LAKE: s3:// needs a bucket: s3://bucket[/prefix] (got {text!r})")
        return f"s3://{parts.netloc}/{parts.path.strip('/')}".rstrip("/")
    if "://" in text and not text.startswith("file://"):
        raise ConfigError(f"MODELOG_LAKE: must be a directory, file:///dir or s3://bucket[/prefix] (got {text!r})")
    if text.startswith("file://"):
        text = urlsplit(text).path
    return str(Path(text).expanduser().resolve())


def storage_options(uri: str, aws: Mapping[str, str] | None = None) -> dict[str, str]:
    """delta-rs options for ``uri``: the AWS_* settings; plain-HTTP endpoints allowed (a local S3 server)."""
    if not is_remote(uri):
        return {}
    opts = {_DELTA_AWS[k]: v for k, v in (aws or {}).items() if k in _DELTA_AWS}
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"):
        if name not in opts and os.environ.get(name):
            opts[name] = os.environ[name]
    opts.setdefault("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    if opts.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        opts["AWS_ALLOW_HTTP"] = "true"
    return opts


def lake_for(settings) -> Lake:
    """The lake ``settings`` name (MODELOG_LAKE), with their AWS_* options and home."""
    return Lake(settings.lake_path, settings.artifact_options, settings.home)


def reader_for(settings) -> LakeReader:
    return LakeReader(settings.lake_path, settings.artifact_options)


def lake_schema(table: str) -> pa.Schema:
    from .tables import TABLES

    return TABLES[table].append(pa.field(SHARD_COLUMN, pa.string()))


class Lake:
    """The Delta tables of one lake, and the local directory of this machine's shard files."""

    def __init__(self, uri: str | Path, aws: Mapping[str, str] | None = None, home: Path | None = None) -> None:
        self.uri = normalize(uri)
        self.remote = is_remote(self.uri)
        self.options = storage_options(self.uri, aws)
        self.home = home
        self._id: str | None = None
        self._tables: dict[str, object] = {}  # table -> DeltaTable, kept and updated incrementally

    def __repr__(self) -> str:
        return f"<Lake {self.uri}>"

    @property
    def root(self) -> Path:
        """The lake's directory (a local lake only)."""
        if self.remote:
            raise QueryError(f"{self.uri} is on object storage: it has no local directory")
        return Path(self.uri)

    def table_uri(self, table: str) -> str:
        return f"{self.uri}/{table}"

    def shard_path(self, shard: str) -> Path:
        """Where this machine keeps a shard's DuckDB file: beside the tables for a local lake, under
        ``$MODELOG_HOME/lake-shards/<lake id>/`` for a lake on object storage (a shard's private state)."""
        if not self.remote:
            return Path(self.uri) / "shards" / f"{shard}.duckdb"
        if self.home is None:
            raise QueryError("a lake on object storage needs MODELOG_HOME for the shard files")
        return self.home / "lake-shards" / self.instance_id / f"{shard}.duckdb"

    # -- tables ------------------------------------------------------------------------------------
    def exists(self) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.table_uri(POSITIONS), storage_options=self.options)

    def table(self, table: str, fresh: bool = True):
        """The DeltaTable ``table`` at its latest version (None if it was never written)."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        dt = self._tables.get(table)
        try:
            if dt is None:
                dt = self._tables[table] = DeltaTable(self.table_uri(table), storage_options=self.options)
            elif fresh:
                dt.update_incremental()
        except TableNotFoundError:
            return None
        return dt

    @property
    def instance_id(self) -> str:
        """The lake's id: ``_positions``' Delta table id, made by whichever worker creates the lake first
        (version 0 is a conditional write: the others read the winner's)."""
        if self._id is None:
            dt = self.table(POSITIONS)
            if dt is None:
                self.ensure()
                dt = self.table(POSITIONS)
            self._id = dt.metadata().id
        return self._id

    def ensure(self) -> None:
        """Create ``_positions`` if no worker has yet (idempotent; a lost race reads the winner's)."""
        from deltalake import DeltaTable

        if not self.remote:
            Path(self.uri).mkdir(parents=True, exist_ok=True)
        try:
            DeltaTable.create(self.table_uri(POSITIONS), POSITIONS_SCHEMA, mode="ignore", name="modelog_positions",
                              storage_options=self.options)
        except Exception:  # noqa: BLE001 -- another worker created it first: fine if it is there now
            if self.table(POSITIONS) is None:
                raise
        self._tables.pop(POSITIONS, None)

    def published(self, table: str, shard: str) -> int:
        """Rows of ``table`` the shard has published (its application transaction in the table's log)."""
        dt = self.table(table)
        if dt is None:
            return 0
        txn = dt.transaction_version(shard)
        return int(txn) if txn is not None else 0

    def append(self, table: str, data: pa.Table, shard: str, total: int) -> None:
        """Append ``data`` (the shard's rows up to ``total``) in one commit that also records ``total``."""
        from deltalake import CommitProperties, Transaction, write_deltalake

        data = data.append_column(SHARD_COLUMN, pa.array([shard] * data.num_rows, pa.string()))
        props = CommitProperties(app_transactions=[Transaction(shard, total)])
        dt = self.table(table, fresh=False)
        if dt is not None:
            write_deltalake(dt, data, mode="append", schema_mode="merge", commit_properties=props)
            return
        try:  # the first rows of this table anywhere: this commit creates it
            write_deltalake(self.table_uri(table), data, mode="append", schema_mode="merge",
                            storage_options=self.options, commit_properties=props)
        except Exception:  # noqa: BLE001 -- another shard created it first: append to that one
            dt = self.table(table)
            if dt is None:
                raise
            if dt.transaction_version(shard) != total:
                write_deltalake(dt, data, mode="append", schema_mode="merge", commit_properties=props)
        finally:
            self._tables.pop(table, None)

    def publish_positions(self, shard: str, positions: Mapping[tuple[str, int], int], now: float) -> None:
        from deltalake import write_deltalake

        ts = pa.scalar(int(now * 1e6), pa.timestamp("us", tz="UTC"))
        data = pa.table({"shard": [shard] * len(positions), "topic": [t for t, _ in positions],
                         "partition": [p for _, p in positions], "next_offset": list(positions.values()),
                         "published_at": [ts.as_py()] * len(positions)}, schema=POSITIONS_SCHEMA)
        dt = self.table(POSITIONS, fresh=False)
        write_deltalake(dt, data, mode="append")

    def compact(self, table: str) -> None:
        """Merge the table's small files, then delete files replaced more than VACUUM_HOURS ago. A concurrent
        compaction of the same files by another worker wins; this one gives up until next time. _positions
        is rewritten to its latest row per partition instead (positions only grow)."""
        from deltalake import write_deltalake

        dt = self.table(table)
        if dt is None:
            return
        try:
            if table == POSITIONS:
                latest = _latest_positions(dt.to_pyarrow_table())
                write_deltalake(dt, latest, mode="overwrite")
            else:
                dt.optimize.compact()
            dt.vacuum(retention_hours=VACUUM_HOURS, enforce_retention_duration=False, dry_run=False)
        except Exception as exc:  # noqa: BLE001 -- a conflicting compaction: the other one did the work
            log.info("compacting %s/%s skipped: %s", self.uri, table, exc)

    # -- reading -----------------------------------------------------------------------------------
    def version(self) -> int | None:
        """Changes whenever a shard publishes (positions are its last commit); None: no lake yet."""
        dt = self.table(POSITIONS)
        return None if dt is None else dt.version()

    def shard_positions(self) -> pa.Table:
        dt = self.table(POSITIONS)
        return _latest_positions(dt.to_pyarrow_table()) if dt is not None else POSITIONS_SCHEMA.empty_table()

    def positions(self) -> dict[tuple[str, int], int]:
        """Next offset per (topic, partition) whose records the lake shows."""
        t = self.shard_positions()
        return {(tp, p): o for tp, p, o in zip(t["topic"].to_pylist(), t["partition"].to_pylist(),
                                               t["next_offset"].to_pylist())}

    def has_published(self, shard: str) -> bool:
        return shard in set(self.shard_positions()["shard"].to_pylist())


def _latest_positions(t: pa.Table) -> pa.Table:
    """One row per (topic, partition): the highest offset (a shard's positions only grow)."""
    if t.num_rows == 0:
        return t
    g = t.group_by(["topic", "partition"]).aggregate([("next_offset", "max")])
    keep = {(tp, p): o for tp, p, o in zip(g["topic"].to_pylist(), g["partition"].to_pylist(),
                                           g["next_offset_max"].to_pylist())}
    mask = [keep.get((tp, p)) == o for tp, p, o in zip(t["topic"].to_pylist(), t["partition"].to_pylist(),
                                                       t["next_offset"].to_pylist())]
    latest = t.filter(pa.array(mask))
    # one row per key even if a position was published twice
    seen, rows = set(), []
    for i, (tp, p) in enumerate(zip(latest["topic"].to_pylist(), latest["partition"].to_pylist())):
        if (tp, p) not in seen:
            seen.add((tp, p))
            rows.append(i)
    return latest.take(pa.array(rows, pa.int64()))


class LakeCache:
    """The lake's tables copied into DuckDB tables ``<target>.<table>`` (with ``lake_shard``), refreshed
    incrementally: a refresh inserts only the Parquet files added since the last one (the tables are
    append-only), and reloads a table only after a compaction replaced its files. ``target``: a schema of
    ``con``'s database, or ``<database>.main`` of an attached in-memory one, so every cursor sees it."""

    def __init__(self, lake: Lake, con: duckdb.DuckDBPyConnection, target: str) -> None:
        from .tables import TABLES, ddl

        self.lake, self.con, self.target = lake, con, target
        self._files: dict[str, set[str]] = {t: set() for t in TABLES}
        self.version: int | None = -1
        for table in TABLES:
            sql = _without_key(ddl(table).replace(f"TABLE IF NOT EXISTS {table} (", f"TABLE IF NOT EXISTS {target}.{table} (", 1))
            con.execute(sql[:-1] + f", {SHARD_COLUMN} VARCHAR)")

    def refresh(self) -> bool:
        """Copy in what was published since the last refresh (one transaction); whether anything changed."""
        version = self.lake.version()
        if version == self.version:
            return False
        reads = {table: self._read(table) for table in self._files}  # network first, outside the transaction
        self.con.execute("BEGIN")
        try:
            for table, read in reads.items():
                if read is None:
                    continue
                paths, data, reload = read
                if reload:
                    self.con.execute(f"DELETE FROM {self.target}.{table}")
                if data is not None and data.num_rows:
                    known = [f.name for f in lake_schema(table)]
                    cols = ", ".join(f'"{c}"' for c in data.column_names if c in known)
                    self.con.register("_lake_batch", data)
                    self.con.execute(f"INSERT INTO {self.target}.{table} BY NAME SELECT {cols} FROM _lake_batch")
                    self.con.unregister("_lake_batch")
                self._files[table] = paths
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.version = version
        return True

    def _read(self, table: str):
        """(every file now, the rows to insert, whether to replace the table's rows); None: unchanged."""
        dt = self.lake.table(table)
        if dt is None:
            return None
        fragments = {f.path: f for f in dt.to_pyarrow_dataset().get_fragments()}
        have = self._files[table]
        if fragments.keys() == have:
            return None
        reload = bool(have - fragments.keys())  # a compaction replaced files: read them all again
        todo = [f for p, f in fragments.items() if reload or p not in have]
        parts = [f.to_table() for f in todo]
        data = pa.concat_tables(parts, promote_options="permissive") if parts else None
        return set(fragments), data, reload


def _without_key(sql: str) -> str:
    """The lake's copy of a table takes rows as published (no primary key to check)."""
    head, sep, _ = sql.partition(", PRIMARY KEY")
    return head + ")" if sep else sql


def view_sql(cache: LakeCache, table: str, schema: str = "main", live: str | None = None,
             exclude_shard: str | None = None) -> str:
    """``CREATE OR REPLACE VIEW <schema>.<table>`` over the lake's copy (without ``lake_shard``), plus the
    relation ``live`` (a shard's own table, whose published rows ``exclude_shard`` then leaves out)."""
    where = ""
    if exclude_shard is not None:
        where = f" WHERE {SHARD_COLUMN} <> '" + exclude_shard.replace("'", "''") + "'"
    parts = [f"SELECT * EXCLUDE ({SHARD_COLUMN}) FROM {cache.target}.{table}{where}"]
    if live:
        parts.insert(0, f"SELECT * FROM {live}")
    return f"CREATE OR REPLACE VIEW {schema}.{table} AS " + " UNION ALL BY NAME ".join(parts)


class ArrowCache:
    """The lake's tables as Arrow in this process, refreshed incrementally as ``LakeCache`` is; what a
    worker's shards register on their connections for the decider (one copy per worker, not per shard)."""

    def __init__(self, lake: Lake) -> None:
        from .tables import TABLES

        self.lake = lake
        self.tables: dict[str, pa.Table] = {t: lake_schema(t).empty_table() for t in TABLES}
        self._files: dict[str, dict[str, pa.Table]] = {t: {} for t in TABLES}
        self.version: int | None = -1
        self._lock = threading.Lock()

    def refresh(self) -> bool:
        with self._lock:
            version = self.lake.version()
            if version == self.version:
                return False
            for table in self.tables:
                dt = self.lake.table(table)
                if dt is None:
                    continue
                old = self._files[table]
                fragments = list(dt.to_pyarrow_dataset().get_fragments())
                if {f.path for f in fragments} == old.keys():
                    continue
                new = {f.path: old[f.path] if f.path in old else f.to_table() for f in fragments}
                self._files[table] = new
                self.tables[table] = pa.concat_tables([lake_schema(table).empty_table(), *new.values()],
                                                      promote_options="permissive")
            self.version = version
            return True

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        for table, data in self.tables.items():
            con.register(f"lake_arrow_{table}", data)


def arrow_view_sql(table: str, live: str, exclude_shard: str, schema: str = "g") -> str:
    """``<schema>.<table>``: a shard's own live rows plus what the other shards published (registered Arrow)."""
    other = exclude_shard.replace("'", "''")
    return (f"CREATE OR REPLACE VIEW {schema}.{table} AS SELECT * FROM {live} UNION ALL BY NAME "
            f"SELECT * EXCLUDE ({SHARD_COLUMN}) FROM lake_arrow_{table} WHERE {SHARD_COLUMN} <> '{other}'")


class LakeReader:
    """The views over a lake, in an in-memory DuckDB of this process; any number may read one lake.

    ``reader()`` refreshes the base tables when a shard published and returns a cursor (as
    ``ViewStore.reader`` does), so the query server and ``modelog.sql`` work on it unchanged.
    """

    replacements_off = True  # set GLOBAL on its connection below

    def __init__(self, uri: str | Path, aws: Mapping[str, str] | None = None) -> None:
        from . import current
        from .store import views_sql
        from .tables import TABLES

        self.lake = Lake(uri, aws)
        self.con = duckdb.connect()
        self.con.execute("SET GLOBAL TimeZone = 'UTC'")
        self.con.execute("SET GLOBAL python_enable_replacements = false")  # for every cursor (ViewStore's note)
        self._lock = threading.Lock()
        self.con.execute("CREATE SCHEMA IF NOT EXISTS lake_data")
        self.cache = LakeCache(self.lake, self.con, "lake_data")
        for table in TABLES:
            self.con.execute(view_sql(self.cache, table))
        self.con.execute(current.views_sql())  # the lake has the facts; current state is computed from them
        self.con.execute(views_sql())
        self.refresh()

    def refresh(self) -> None:
        with self._lock:
            self.cache.refresh()

    def reader(self) -> duckdb.DuckDBPyConnection:
        self.refresh()
        return self.con.cursor()

    def positions(self) -> dict[tuple[str, int], int]:
        return self.lake.positions()

    def query(self, sql: str, as_of: str | None = None, params: list | None = None, limits=None,
              on_behalf_of: str | None = None):
        """Run one read-only statement; an Arrow table. Retries once if a compaction removed a file mid-refresh.
        ``on_behalf_of``: answer with what that principal may read (processors/scope.py)."""
        from .query_server import arrow_result
        from .scope import read_scope

        for attempt in (0, 1):
            try:
                cur = self.reader()
            except (OSError, duckdb.IOException) as exc:
                if attempt:
                    raise QueryError(f"reading the lake {self.lake.uri}: {exc}") from exc
                time.sleep(0.05)
                continue
            try:
                scope = read_scope(cur, on_behalf_of) if on_behalf_of is not None else None
                return arrow_result(cur, sql, as_of, params, limits, scope)
            except duckdb.Error as exc:
                raise QueryError(str(exc)) from exc
            finally:
                cur.close()
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.con.close()
