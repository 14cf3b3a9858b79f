"""The DuckDB side: base tables, views, and applying a projected batch in one transaction.

A batch is applied exactly once however often it is delivered: the events
already in ``log_events`` (by event_id) are skipped, and the rows of the rest
plus the new consumer positions are written in a single transaction. Crash
anywhere and the file holds either all of a batch or none of it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb

from modelog.wire.errors import QueryError

from . import current
from .chain import Chain, PartitionChain
from .decider import Decider
from .merkle import CompactTree
from .projection import RawRecord
from .projector import Prepared, Projector
from .registry import DECISION_TRIGGERS
from .rows import new_rows
from .scope import GOVERNANCE_TABLES, governance_version
from .tables import DERIVED, DUCK_TYPES, TABLES, ddl, to_arrow
from .trust import KeyInfo, Trust

from . import access, keys, lineage, monitoring, privacy, registry

log = logging.getLogger(__name__)

CHECKPOINT_THRESHOLD = "4MB"  # DuckDB's automatic checkpoint once the WAL is this big (decision 0029)

FAMILIES = (registry, lineage, monitoring, access, keys, privacy)  # event families beyond tracking, each with TABLES, PROJECTIONS, VIEWS, VIEWS_SQL

VIEW_NAMES = ("experiments", "runs", "run_environments", "params", "metrics", "latest_metrics", "tags",
              "artifacts", "audit_log", "dead_letters") + tuple(v for f in FAMILIES for v in f.VIEWS)


DERIVED_FROM: dict[str, list[str]] = {}  # source table -> the tables derived from it as it is written
for _derived, (_source, _) in DERIVED.items():
    DERIVED_FROM.setdefault(_source, []).append(_derived)


def _add_missing_columns(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """A file made before a column was added to ``table`` (a schema evolved with a new optional field,
    e.g. ``log_artifacts.content_address``) gets it, NULL in the rows it already holds."""
    have = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' AND table_name = ?",
        [table]).fetchall()}
    for f in TABLES[table]:
        if f.name not in have:
            con.execute(f'ALTER TABLE {table} ADD COLUMN "{f.name}" {DUCK_TYPES[f.type]}')


def views_sql() -> str:
    """All view definitions: tracking's ``views.sql``, then each family's file, in order."""
    files = ["views.sql"] + [f.VIEWS_SQL for f in FAMILIES]
    return "\n".join(resources.files("modelog.processors").joinpath(name).read_text() for name in files)


@dataclass
class BatchStats:
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    dead: int = 0
    rows: int = 0
    decided: int = 0

    def add(self, other: BatchStats) -> None:
        for k in vars(self):
            setattr(self, k, getattr(self, k) + getattr(other, k))


# DuckDB's allocator (jemalloc) flushes after any task that allocated more than 16 MB (128 MB by default) and
# purges freed pages on background threads: with Arrow on malloc in the same process (processors.app), the
# projector's peak RSS at 10^7 points went from 516-562 to 488-505 MiB (docs/benchmarks.md, "Projector memory")
LEAN_ALLOCATOR = ("SET allocator_flush_threshold = '16MB'", "SET allocator_background_threads = true")


class ViewStore:
    """Owns the one writing connection to the views file."""

    replacements_off = True  # its readers' cursors never resolve a name to a Python object (see _connect)

    def __init__(self, path: Path | str, instance_id: str | None = None, memory_limit: str | None = None,
                 lean_allocator: bool = False) -> None:
        """``lean_allocator``: DuckDB's allocator hands freed memory back early (LEAN_ALLOCATOR; the projector's
        process, where peak memory is a target -- not every process that opens a store)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._memory_limit = memory_limit
        self._lean_allocator = lean_allocator
        self.con = self._connect()
        self._lock = threading.Lock()
        self._swap = threading.Lock()  # held while the file is replaced (_rewrite); readers wait for it
        existing = {r[0] for r in self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
        for table in TABLES:
            self.con.execute(ddl(table))
            if table in existing:  # a file from before a column existed (log_events' verified, key_id, ...)
                _add_missing_columns(self.con, table)
        for table, (source, select) in DERIVED.items():
            if table not in existing and source in existing:  # a file from before the table existed
                self.con.execute(f"INSERT INTO {table} BY NAME " + select.format(points=source))
                existing.add(table)
        for cur in current.CURRENT.values():  # current-state tables (decision 0014)
            self.con.execute(current.ddl(cur))
            if cur.name not in existing and existing & {base for base, _ in cur.sources}:  # a file from before the table existed
                self.con.execute(f"INSERT INTO {cur.name} BY NAME " + current.definition_sql(cur))
        self.con.execute("CREATE TABLE IF NOT EXISTS positions (topic VARCHAR, \"partition\" INTEGER, "
                         "next_offset BIGINT, PRIMARY KEY (topic, \"partition\"))")
        self.con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        self.con.execute(CHAIN_DDL)
        self.con.execute(views_sql())
        row = self.con.execute("SELECT value FROM meta WHERE key = 'instance_id'").fetchone()
        if row is None:
            self.instance_id = instance_id or uuid.uuid4().hex
            self.con.execute("INSERT INTO meta VALUES ('instance_id', ?)", [self.instance_id])
        else:
            self.instance_id = row[0]
        self.decider = Decider()
        self._trust: Trust | None = None  # the key registry as of the last committed batch (None: read it)
        # tamper evidence (decision 0023): the Merkle tree of every partition read, kept in ``log_chain``
        # with the positions; None: not kept (the first pass of a rebuild, the workers of a lake)
        self.chain: Chain | None = None
        self.publish_checkpoints: Callable[[list[dict]], None] | None = None  # puts them on the log
        self._chain_loaded = False
        # governance_version as of a generation of committed batches: the query path reads it per request,
        # and two statements per request were most of a bare query's cost; a batch that wrote keys, grants
        # or revocations moves the generation on commit, and the next request reads it again
        self._governance: tuple[int, tuple[bool, int]] | None = None
        self._governance_generation = 0
        self._governance_touched = False
        # moves on when committed data changes (the SQL endpoint keeps answers per generation, decision 0028):
        # right before a COMMIT and right after it, so that a reader who read it before running a statement
        # saw at least that generation's data, and what was kept around the commit is dropped after it.
        # on_commit: called with each new generation
        self.generation = 0
        self.on_commit: list[Callable[[int], None]] = []
        self.opened = 0  # times the file was opened again (_rewrite, _reopen): older cursors are closed

    def _connect(self) -> duckdb.DuckDBPyConnection:
        try:
            con = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:
            raise QueryError(f"cannot open {self.path} for writing (is another processor running?): {exc}") from exc
        if self._memory_limit:
            try:
                con.execute(f"SET memory_limit = '{self._memory_limit.replace(chr(39), '')}'")
            except duckdb.Error as exc:
                con.close()
                raise QueryError(f"MODELOG_DUCKDB_MEMORY_LIMIT: {exc}") from exc
        if _has_tz(con):  # for every connection of this database, readers' cursors included
            con.execute("SET GLOBAL TimeZone = 'UTC'")
        # a name in FROM never resolves to a Python object of this process, on any cursor (the SQL endpoint's
        # sandbox; arrow_result sets it per statement only on connections that are not known to have it)
        con.execute("SET GLOBAL python_enable_replacements = false")
        # small checkpoints (decision 0029): DuckDB's automatic checkpoint runs inside a COMMIT once the WAL
        # passes the threshold and holds memory in proportion to it (16 MB by default: the projector's RSS
        # jumped by 200-450 MiB for a second or two at 10^7 points). And every commit goes to the WAL first:
        # by default a large commit that falls due for a checkpoint skips the WAL and is visible to readers
        # before it is durable, so a kill -9 during that checkpoint lost rows the endpoint had shown. The
        # price: a checkpoint that fails after its commit (a full disk) invalidates the database -> _reopen.
        con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
        con.execute(f"SET auto_checkpoint_skip_wal_threshold = {2 ** 62}")
        if self._lean_allocator:
            for statement in LEAN_ALLOCATOR:
                con.execute(statement)
        return con

    def _reopen(self, cause: BaseException) -> None:
        """Open the views file again after DuckDB invalidated the database (``cause``: a checkpoint that
        failed after its commit was written to the WAL, on a full disk). Opening replays the WAL: every
        committed batch is there, and nothing else. Readers get cursors of the new connection; a statement
        running on the old one fails and can be retried. Caller holds ``_lock``."""
        with self._swap:
            self._open_again(cause)

    def _open_again(self, cause: BaseException) -> None:
        """:meth:`_reopen` for a caller holding ``_swap`` too."""
        log.warning("the views at %s were invalidated by DuckDB (%s): opening them again", self.path, cause)
        with contextlib.suppress(duckdb.Error):
            self.con.close()
        self._trust = None
        self._governance_generation += 1
        self._connected()  # not views_sql(): the file has them, and the disk may still be full

    def _connected(self, *statements: str) -> None:
        """Open the file (again) as ``self.con``, run ``statements`` on it, and move the generation on
        (caller holds ``_swap``): what _rewrite and _open_again share."""
        self.con = self._connect()
        self.opened += 1
        for statement in statements:
            self.con.execute(statement)
        self._committed()

    def _commit(self, con: duckdb.DuckDBPyConnection, records: list[RawRecord]) -> None:
        """COMMIT the batch of ``records``. When DuckDB invalidates the database during the checkpoint after
        the commit, the store reopens the file and the batch counts as committed if the file has its
        positions (the WAL had it); else the commit's error is raised and the batch is retried."""
        try:
            con.execute("COMMIT")
        except duckdb.FatalException as exc:
            self._reopen(exc)
            if not self._holds(records):
                raise
            log.warning("the batch ending at %s was committed before the checkpoint failed: kept",
                        {f"{r.topic}/{r.partition}": r.offset for r in records})

    def _holds(self, records: list[RawRecord]) -> bool:
        """Whether the file's positions are past every one of ``records`` (caller holds ``_lock``)."""
        have = {(t, p): o for t, p, o in self.con.execute("SELECT * FROM positions").fetchall()}
        return all(have.get((r.topic, r.partition), -1) > r.offset for r in records)

    def apply(self, records: list[RawRecord], projector: Projector,
              publish: Callable[[list[dict]], None] | None = None) -> tuple[BatchStats, list]:
        """Decode, dedupe, project and write ``records`` in one transaction. Returns (stats, dead letters).

        After each governed-change trigger (a request or an approval) the decider sees the state so far,
        inside the transaction, and its decisions are written as ``computed`` rows. ``publish`` (the live
        processor's) must put those RequestDecided records on the log before the transaction commits; a
        failure rolls the batch back so it is redelivered. Rebuilds pass no ``publish``.
        """
        stats = BatchStats(records=len(records))
        decided: list[dict] = []
        with self._lock:
            con = self.con
            self._governance_touched = False
            con.execute("BEGIN TRANSACTION")
            try:
                # signatures and admin-only changes are judged against the key registry of this file, read
                # inside the transaction (a rolled-back batch leaves no trace in it either)
                trust = self._trust_for(con, records)
                self._trust = None  # until this batch commits (prepare updates it with admitted trust events)
                prepared = projector.prepare(records, trust)
                known = self._known(prepared.event_ids)
                dead: list = []
                erased = self._erased_keys() if projector.keys is not None else frozenset()
                for i, segment in enumerate(_segments(prepared)):
                    rows, seg_dead, applied = projector.rows(segment, known, erased)
                    stats.applied += applied
                    dead.extend(seg_dead)
                    stats.rows += self._insert(rows)
                    last_id, last_type, last_record, last_pos, _ = segment.events[-1] if segment.events else (None,) * 5
                    fresh = last_id is not None and last_id not in known
                    known.update(segment.event_ids)
                    if fresh and last_type in DECISION_TRIGGERS:
                        for rec in self._decide(con, last_type, last_record, last_pos):
                            out = new_rows()
                            registry.decision_rows(rec, "computed", out)
                            self._insert(out)
                            decided.append(rec)
                stats.duplicates = len(prepared.events) - stats.applied
                stats.dead = len(dead)
                erasing = privacy.erased_key_ids(prepared.events)
                if erasing:
                    self._erase(erasing)
                self._advance(records)
                chained = self._chain_records(records)
                if decided and publish is not None:
                    publish(decided)
                self._committed()  # before and after: nothing kept in between outlives the commit
                self._commit(con, records)
                if self._governance_touched:  # before the generation moves on: no answer of the new
                    self._governance_generation += 1  # generation is found or kept with the old governance
                self._committed()
                if chained is not None:
                    self.chain.commit(chained)
                if not any(d.reason == "projection_failed" for d in dead):  # else the file and the copy may differ
                    self._trust = trust
            except BaseException:
                if self.con is con:  # else the database was invalidated and opened again: nothing is open
                    _rollback(con)
                self._trust_rolled_back()
                raise
            if erasing and projector.keys is not None:  # plaintext was replaced: leave none in free blocks
                self._rewrite()
        stats.decided = len(decided)
        return stats, dead

    def _committed(self) -> None:
        self.generation += 1
        for listener in self.on_commit:
            listener(self.generation)

    def _trust_for(self, con: duckdb.DuckDBPyConnection, records: list[RawRecord]) -> Trust:
        """The registry a batch is judged with: this file's, as of its last committed batch."""
        return self._trust if self._trust is not None else load_trust(con)

    def _trust_rolled_back(self) -> None:
        """A batch was rolled back (its trust was dropped already: read again from the file)."""

    def _erased_keys(self) -> frozenset[str]:
        return frozenset(r[0] for r in self.con.execute(
            "SELECT DISTINCT key_id FROM log_erasures WHERE key_id IS NOT NULL").fetchall())

    def _erase(self, key_ids: set[str]) -> None:
        """Replace every value sealed with one of ``key_ids`` by ``[erased]`` (in the batch's transaction)."""
        import pyarrow as pa

        with registered(self.con, "_erased", pa.table({"key_id": pa.array(sorted(key_ids), pa.string())})):
            for statement in privacy.erase_sql():
                self.con.execute(statement)

    def _rewrite(self) -> None:
        """Copy the views file into a fresh file and put it in its place (caller holds the lock).

        An UPDATE leaves the old values in the file's free blocks and in its WAL, and neither CHECKPOINT
        nor VACUUM overwrites them: after an erasure the only way to have the plaintext gone from the bytes
        on disk is a file that never held it (decision 0018). Queries running on the old connection at
        that moment fail and can be retried."""
        with self._swap:
            con = self.con
            fresh = self.path.with_name(f".{self.path.name}.rewrite-{os.getpid()}")
            for p in (fresh, Path(f"{fresh}.wal")):
                p.unlink(missing_ok=True)
            try:
                con.execute("CHECKPOINT")
                (catalog,) = con.execute("SELECT current_database()").fetchone()
                con.execute("ATTACH '{}' AS _fresh".format(str(fresh).replace("'", "''")))
                try:
                    con.execute('COPY FROM DATABASE "{}" TO _fresh'.format(catalog.replace('"', '""')))
                finally:
                    con.execute("DETACH _fresh")
            except (duckdb.Error, OSError) as exc:  # the erasure is committed; the next one rewrites the file
                fresh.unlink(missing_ok=True)
                if isinstance(exc, duckdb.FatalException):
                    self._open_again(exc)
                log.warning("views file not rewritten after an erasure (%s): old values may remain in its free "
                            "blocks until the next erasure", type(exc).__name__)
                return
            con.close()
            try:
                os.replace(fresh, self.path)
                Path(f"{self.path}.wal").unlink(missing_ok=True)
            finally:
                self._connected(views_sql())  # recreated from their text, as on every open

    def _decide(self, con, event_type: str, record: dict, pos: RawRecord) -> list[dict]:
        """The decider's verdicts after a trigger event, reading state through ``con`` (in the batch's transaction)."""
        return self.decider.after(con, event_type, record, pos)

    # -- tamper evidence ------------------------------------------------------------------------------
    def _chain_records(self, records: list[RawRecord]) -> dict | None:
        """Append ``records`` to their partitions' trees (in this transaction) and publish the checkpoints
        that fell due, before the batch commits. Returns the changed trees, to keep once it committed."""
        if self.chain is None:
            return None
        self._load_chain()
        changed, due = self.chain.observe(records, time.time(), self.chain.partitions)
        self._save_chain(changed, due)
        return changed

    def chain_tick(self) -> int:
        """Checkpoint the partitions whose oldest record not checkpointed waited long enough. Returns how many."""
        if self.chain is None:
            return 0
        with self._lock:
            self._load_chain()
            changed, due = self.chain.tick(time.time())
            if not due:
                return 0
            con = self.con
            con.execute("BEGIN TRANSACTION")
            try:
                self._save_chain(changed, due)
                self._committed()
                try:
                    con.execute("COMMIT")
                except duckdb.FatalException as exc:  # the checkpoints were published; the next tick saves them
                    self._reopen(exc)
                    self._chain_loaded = False
                    self.chain.partitions.clear()
                    raise
                self._committed()
            except BaseException:
                if self.con is con:
                    _rollback(con)
                raise
            self.chain.commit(changed)
            return len(due)

    def _load_chain(self) -> None:
        if self._chain_loaded:
            return
        assert self.chain is not None
        for (topic, partition, base, nxt, size, nodes, cp_size, since, offsets, hints) in self.con.execute(
                "SELECT * FROM log_chain").fetchall():
            offs = bytes(offsets or b"")
            self.chain.partitions[(topic, partition)] = PartitionChain(
                topic, partition, base, nxt, CompactTree.from_bytes(size, bytes(nodes)), cp_size, since,
                list(struct.unpack(f">{len(offs) // 8}q", offs)), bytearray(hints or b""))
        self._chain_loaded = True

    def _save_chain(self, changed: dict, due: list[dict]) -> None:
        for pc in changed.values():
            self.con.execute(
                "INSERT OR REPLACE INTO log_chain VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [pc.topic, pc.partition, pc.base_offset, pc.next_offset, pc.size, pc.tree.to_bytes(),
                 pc.checkpoint_size, pc.pending_since, struct.pack(f">{len(pc.pending_offsets)}q", *pc.pending_offsets),
                 bytes(pc.pending_hints)])
        if due and self.publish_checkpoints is not None:
            self.publish_checkpoints(due)

    def tick(self) -> None:
        """Periodic upkeep between batches (nothing for one file; shards publish to the lake)."""

    def release(self, tps) -> None:
        """The consumer group took these (topic, partition)s away (nothing for one file)."""

    def _insert(self, rows) -> int:
        n = 0
        for table, cols in rows.items():
            if table == "log_dead_letters":
                self._insert_dead(cols)
                continue
            arrow = to_arrow(table, cols)
            n += arrow.num_rows
            if table in GOVERNANCE_TABLES and arrow.num_rows:
                self._governance_touched = True
            self._write(table, arrow)
        return n

    def _write(self, table: str, arrow) -> None:
        """Insert ``arrow`` into ``table``, then the rows derived from it (computed once, from the batch only)
        into theirs, and upsert the current-state tables either feeds."""
        with registered(self.con, "_batch", arrow):
            self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _batch")
            derived = {d: self.con.sql(DERIVED[d][1].format(points="_batch")).to_arrow_table()
                       for d in DERIVED_FROM.get(table, ())}
            for cur in current.CURRENT_FROM.get(table, ()):
                self.con.execute(current.upsert_sql(cur, f"({current.merged_batch_sql(cur, table)})"))
        for d, rows in derived.items():
            self._write(d, rows)

    def _known(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        import pyarrow as pa

        with registered(self.con, "_ids", pa.table({"event_id": pa.array(ids, pa.string())})):
            return {r[0] for r in self.con.execute(
                "SELECT e.event_id FROM log_events e SEMI JOIN _ids USING (event_id)").fetchall()}

    def _insert_dead(self, cols: dict) -> None:
        arrow = to_arrow("log_dead_letters", cols)
        with registered(self.con, "_dead", arrow):
            self.con.execute("INSERT INTO log_dead_letters BY NAME SELECT * FROM _dead ON CONFLICT DO NOTHING")

    def _advance(self, records: list[RawRecord]) -> None:
        nxt: dict[tuple[str, int], int] = {}
        for r in records:
            k = (r.topic, r.partition)
            if r.offset + 1 > nxt.get(k, -1):
                nxt[k] = r.offset + 1
        for (topic, partition), offset in nxt.items():
            self.con.execute(
                "INSERT INTO positions VALUES (?, ?, ?) ON CONFLICT DO UPDATE "
                "SET next_offset = greatest(positions.next_offset, excluded.next_offset)",
                [topic, partition, offset])

    def positions(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return {(t, p): o for t, p, o in self.con.execute("SELECT * FROM positions").fetchall()}

    def reader(self) -> duckdb.DuckDBPyConnection:
        """A separate connection for queries (DuckDB MVCC: sees committed batches only)."""
        with self._swap:  # not while the file is being rewritten after an erasure
            return self.con.cursor()

    def governance(self, cur: duckdb.DuckDBPyConnection) -> tuple[bool, int]:
        """``governance_version`` of the committed views, read through ``cur`` (a reader of this store) only
        when a batch that wrote keys, grants or revocations has committed since it was last read."""
        generation = self._governance_generation  # before reading: a commit after this moves it on again
        cached = self._governance
        if cached is not None and cached[0] == generation:
            return cached[1]
        value = governance_version(cur)
        self._governance = (generation, value)
        return value

    def governance_known(self) -> tuple[bool, int] | None:
        """:meth:`governance` when it needs no read (no batch touched governance since it was read), else None."""
        cached = self._governance
        return cached[1] if cached is not None and cached[0] == self._governance_generation else None

    def checkpoint(self) -> None:
        with self._lock:
            try:
                self.con.execute("CHECKPOINT")
            except duckdb.FatalException as exc:
                self._reopen(exc)
                raise

    def close(self) -> None:
        with self._lock:
            self.con.close()


@contextlib.contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, data) -> Iterator[None]:
    """``data`` (Arrow) visible as ``name`` on ``con`` inside the block. If the block failed, an error of the
    unregistering is not raised in place of the block's: a statement that failed (the views' disk full during
    an INSERT) aborts the transaction, and DuckDB then refuses the unregister too ("Current transaction is
    aborted"), which hid the cause from the log line and from ``storage_error`` (CI, disk-full)."""
    con.register(name, data)
    try:
        yield
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.unregister(name)
        raise
    con.unregister(name)


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction, if any: a COMMIT that failed (a full disk: the WAL could not be
    written) has already rolled it back, and the ROLLBACK's own error must not hide the COMMIT's."""
    try:
        con.execute("ROLLBACK")
    except duckdb.TransactionException as exc:
        if "no transaction is active" not in str(exc):
            raise


STORAGE_SIGNS = ("no space left on device", "disk quota exceeded", "could not write file", "could not fsync",
                 "i/o error", "input/output error", "read-only file system")


def storage_error(exc: BaseException) -> str | None:
    """The reason when ``exc`` says the views could not be written to their disk (full, quota, I/O error,
    read-only), else None. DuckDB reports a full disk at COMMIT as a TransactionException whose text names
    the file ("Could not write file .../views.duckdb.wal: No space left on device")."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
        return f"{exc.strerror or exc} ({getattr(exc, 'filename', None) or 'the views file'})"
    if isinstance(exc, (duckdb.IOException, duckdb.Error)):
        text = str(exc)
        if isinstance(exc, duckdb.IOException) or any(sign in text.lower() for sign in STORAGE_SIGNS):
            return text
    return None


CHAIN_DDL = """CREATE TABLE IF NOT EXISTS log_chain (
    topic VARCHAR, "partition" INTEGER, base_offset BIGINT, next_offset BIGINT, size BIGINT, nodes BLOB,
    checkpoint_size BIGINT, pending_since DOUBLE, pending_offsets BLOB, pending_hints BLOB,
    PRIMARY KEY (topic, "partition"))"""


def load_trust(con: duckdb.DuckDBPyConnection) -> Trust:
    """The key registry, global admin grants and require-signatures switches the views hold (decision 0015)."""
    trust = Trust()
    for key_id, principal, public_key, caps, at, bootstrap in con.execute(
            "SELECT k.key_id, k.principal, k.public_key, k.capabilities, epoch_us(coalesce(e.logged_at, e.occurred_at)), "
            "k.bootstrap FROM log_keys k JOIN log_events e USING (event_id) "
            "ORDER BY coalesce(e.logged_at, e.occurred_at), e.\"partition\", e.\"offset\"").fetchall():
        if key_id not in trust.keys:
            trust.keys[key_id] = KeyInfo(key_id, principal, bytes(public_key), frozenset(caps or ()), at,
                                         None, bool(bootstrap) and trust.bootstrap_key() is None)
    for key_id, at in con.execute(
            "SELECT r.key_id, min(epoch_us(coalesce(e.logged_at, e.occurred_at))) FROM log_key_revocations r "
            "JOIN log_events e USING (event_id) GROUP BY r.key_id").fetchall():
        if key_id in trust.keys:
            trust.keys[key_id].revoked_at = at
    for principal, at, role, experiment, model, granted in con.execute(
            "SELECT principal, epoch_us(changed_at), role, experiment, model, coalesce(granted, true) FROM log_access "
            "ORDER BY changed_at, event_id").fetchall():
        trust.grants.setdefault(principal, []).append((at, role, experiment, model, bool(granted)))
        if role == "admin" and model is None and experiment is None:
            trust.admin_grants.append((principal, at, bool(granted)))

    def run_lookup(run_id: str) -> str | None:  # the first RunStarted of the run, as the runs view has it
        rows = con.execute("SELECT experiment FROM log_run_started WHERE run_id = ? ORDER BY event_id LIMIT 1",
                           [run_id]).fetchall()
        return rows[0][0] if rows else None

    trust.run_lookup = run_lookup
    trust.signature_policy = [(at, bool(req)) for at, req in con.execute(
        "SELECT epoch_us(coalesce(e.logged_at, e.occurred_at)), p.require_signatures FROM log_signature_policy p "
        "JOIN log_events e USING (event_id)").fetchall()]
    return trust


def _segments(prepared: Prepared) -> Iterator[Prepared]:
    """Split a batch after every decision trigger, so the decider sees exactly the events before it.

    The batch's dead letters travel with the first segment.
    """
    current = Prepared(dead=list(prepared.dead), signed_by=prepared.signed_by)
    for event in prepared.events:
        current.events.append(event)
        if event[1] in DECISION_TRIGGERS:
            yield current
            current = Prepared(signed_by=prepared.signed_by)
    if current.events or current.dead:
        yield current


def _has_tz(con: duckdb.DuckDBPyConnection) -> bool:
    try:
        con.execute("SELECT current_setting('TimeZone')")
        return True
    except duckdb.Error:
        return False
