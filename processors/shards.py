"""Shards: the projector's store when several workers share the log (decision 0009).

Each (topic, partition) is projected into its own DuckDB file (a ``ShardStore``), owned by whichever
worker the consumer group assigned that partition to. The shard keeps exactly what a single views file
keeps for its records (dedup by event id, positions, one transaction per batch), so a partition can
move between workers without losing or doubling anything: the file moves with it (DuckDB's lock makes
the hand-over exclusive). A shard publishes its rows to the lake (``lake.py``); the views read the lake.

The governance decider needs state beyond one partition (grants, policies, the metrics of a gated run).
A shard gives it the global picture in a schema ``g`` of its own file: every base table is its own live
rows plus what the other shards have published, and the views are defined again over those. Decisions
therefore see other partitions as of their last publication (well under a second behind); as always,
a recorded decision wins over a recomputed one on replay.

Signatures and write authorization need the trust records of every partition, exactly: the worker's
``Ledger`` (``ledger.py``), fed by its own ``TrustReader`` (``trust_reader.py``), judges them once for all its
shards, and a batch waits until the reader has caught up with it (decision 0015, amended). The experiment of
a run (what a write to a run is authorized against) comes from the shard's own rows and the other shards'
published ones. Each shard keeps the Merkle tree of its partition in its file (``log_chain``, moving with
it) and publishes signed checkpoints, as one processor does (decision 0023).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable


from modelog.wire.errors import QueryError

from . import current
from .chain import Chain
from .decider import Decider
from .ledger import Ledger
from .lake import COMPACT_EVERY, POSITIONS, SHARD_COLUMN, ArrowCache, Lake, arrow_view_sql, shard_id
from .projection import RawRecord
from .projector import Projector
from .store import DERIVED_FROM, BatchStats, ViewStore, views_sql
from .tables import TABLES
from .trust import Trust

log = logging.getLogger("modelog.processor")

PUBLISH_INTERVAL = 0.2  # seconds: a shard publishes its new rows at most this often (and at least this often when it has any)
OPEN_TIMEOUT = 60.0  # seconds a worker waits for the previous owner of a partition to let go of its shard


class ShardLost(QueryError):
    """A shard file is missing while the lake holds what it published: the lake must be rebuilt."""


class ShardStore(ViewStore):
    """One (topic, partition)'s views: a DuckDB file of its own, published to the lake."""

    def __init__(self, lake: Lake, topic: str, partition: int, memory_limit: str | None = None) -> None:
        self.lake, self.topic, self.partition = lake, topic, partition
        self.shard = shard_id(topic, partition)
        path = lake.shard_path(self.shard)
        if not path.exists() and lake.has_published(self.shard):
            raise ShardLost(f"shard file {path} is missing but the lake {lake.uri} holds what it published: "
                            f"stop every worker and delete the lake to rebuild it from the log")
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(path, instance_id=lake.instance_id, memory_limit=memory_limit)
        # rows of each table the lake has from this shard: the shard's transaction in the table's Delta log
        self.published = {t: lake.published(t, self.shard) for t in TABLES}
        self.commits: dict[str, int] = {}  # commits of this shard per table since it opened (compaction)
        self._dirty: set[str] = set(TABLES)  # tables that may have rows the lake does not have (all, on open)
        self._moved = True  # positions changed since the last publication
        self._global = False
        self.arrow_cache = ArrowCache(lake)  # replaced by the worker's shared one (ShardSet.open)
        self.published_at = 0.0
        self.next_offset = {(t, p): o for (t, p), o in self.positions().items()}.get((topic, partition), 0)
        self.ledger: Ledger | None = None  # the worker's trust records (None: this file's, as one processor)
        self._runs: dict[str, str] = {}  # run id -> experiment, for authorizing writes to runs
        behind = {t: n for t, n in self.published.items() if n > self.con.execute(
            f"SELECT count(*) FROM {t}").fetchall()[0][0]}
        if behind:  # another machine's worker owned the partition since this file was written
            self.close()
            raise ShardLost(f"shard file {path} is behind the lake {lake.uri} (it published more of "
                            f"{', '.join(sorted(behind))} from elsewhere): stop every worker and delete the lake "
                            f"to rebuild it from the log")

    # -- writing -------------------------------------------------------------------
    def apply(self, records, projector, publish=None):
        fresh = [r for r in records if r.offset >= self.next_offset]  # below: already in this shard
        if not fresh:
            return BatchStats(records=len(records), duplicates=len(records)), []
        stats, dead = super().apply(fresh, projector, publish)
        stats.records, stats.duplicates = len(records), stats.duplicates + len(records) - len(fresh)
        self.next_offset = max(self.next_offset, max(r.offset for r in fresh) + 1)
        return stats, dead

    def _insert(self, rows) -> int:
        written = {t for t, cols in rows.items() if cols.num_rows}
        self._dirty.update(written, *(DERIVED_FROM.get(t, ()) for t in written))
        return super()._insert(rows)

    def _advance(self, records) -> None:
        self._moved = True
        super()._advance(records)

    # -- trust: the worker's ledger, the runs of every shard ----------------------------------------
    def _trust_for(self, con, records) -> Trust:
        if self.ledger is None:
            return super()._trust_for(con, records)
        return self.ledger.view(self._runs, self._run_experiment)

    def _run_experiment(self, run_id: str) -> str | None:
        """A run's experiment (its first RunStarted by event id, as the runs view has it), from this shard's
        rows and what the other shards have published (a lineage edge may name a run of another partition)."""
        cache = self.arrow_cache
        cache.refresh()  # Arrow only: a batch's transaction on the connection is untouched
        cache.register(self.con)
        rows = self.con.execute(
            "SELECT experiment FROM (SELECT event_id, experiment FROM main.log_run_started WHERE run_id = $1 "
            "UNION ALL SELECT event_id, experiment FROM lake_arrow_log_run_started "
            f"WHERE run_id = $1 AND {SHARD_COLUMN} <> $2) ORDER BY event_id LIMIT 1", [run_id, self.shard]).fetchall()
        return rows[0][0] if rows else None

    # -- the decider's global picture -----------------------------------------------------
    def _decide(self, con, event_type, record, pos):
        cache = self.arrow_cache
        cache.refresh()  # Arrow only: the batch's transaction on ``con`` is untouched
        cache.register(con)
        if not self._global:
            con.execute("CREATE SCHEMA IF NOT EXISTS g")
            for table in TABLES:  # the other shards' published rows, and this shard's own live ones
                con.execute(arrow_view_sql(table, f"main.{table}", self.shard))
            con.execute("SET schema = 'g'")
            con.execute(current.views_sql())  # over g's base tables: every shard's facts
            con.execute(views_sql())
            con.execute("RESET schema")
            self._global = True
        con.execute("SET search_path = 'g,main'")
        try:
            return super()._decide(con, event_type, record, pos)
        finally:
            con.execute("RESET search_path")

    # -- publishing --------------------------------------------------------------------
    def due(self, now: float) -> bool:
        return bool(self._dirty or self._moved) and now - self.published_at >= PUBLISH_INTERVAL

    def publish(self, now: float | None = None) -> bool:
        """Append the rows the lake does not have yet to its Delta tables, then the positions.
        Returns whether anything was published."""
        now = time.time() if now is None else now
        with self._lock:
            con = self.con
            changed = self._moved
            # log_events last: a record whose event the lake has has all its rows there too
            for table in sorted(self._dirty, key=lambda t: (t == "log_events", t)):
                total = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
                done = self.published[table]
                if total <= done:
                    continue
                data = con.sql(f"SELECT * FROM {table} WHERE rowid >= {done} AND rowid < {total}").to_arrow_table()
                try:
                    self.lake.append(table, data.cast(TABLES[table]), self.shard, total)
                except Exception:
                    # the commit may have landed before the error: read back how far the lake got
                    self.published[table] = self.lake.published(table, self.shard)
                    raise
                self.published[table] = total
                self._count_commit(table)
                changed = True
            self._dirty.clear()
            if not changed:
                return False
            positions = {(t, p): o for t, p, o in con.execute("SELECT * FROM positions").fetchall()}
            self.lake.publish_positions(self.shard, positions, now)
            self._count_commit(POSITIONS)
            self._moved = False
            self.published_at = now
            return True

    def _count_commit(self, table: str) -> None:
        n = self.commits[table] = self.commits.get(table, 0) + 1
        if n % COMPACT_EVERY == 0:
            self.lake.compact(table)


class ShardSet:
    """The shards this worker owns, opened on first use and closed when the group takes them away.

    Has ``ViewStore``'s ``apply`` so the projector app drives it the same way."""

    def __init__(self, lake: Lake, memory_limit: str | None = None, reader=None,
                 chain: tuple[int, float] | None = None) -> None:
        """``reader``: the worker's ``TrustReader`` (None: the ledger learns from the batches applied here
        only); ``chain``: (every, seconds) to keep each shard's Merkle tree and checkpoint it (decision 0023),
        with ``publish_checkpoints`` putting the checkpoints on the log."""
        self.lake = lake
        self.memory_limit = memory_limit
        self.instance_id = lake.instance_id
        self.shards: dict[tuple[str, int], ShardStore] = {}
        self.decider = Decider()
        self.ledger = Ledger()
        self.reader = reader
        self.chain = chain
        self.publish_checkpoints: Callable[[list[dict]], None] | None = None
        self.arrow_cache = ArrowCache(lake)  # what the other shards published, for the decider
        self._lock = threading.Lock()

    def open(self, topic: str, partition: int, timeout: float = OPEN_TIMEOUT) -> ShardStore:
        shard = self.shards.get((topic, partition))
        if shard is not None:
            return shard
        deadline = time.monotonic() + timeout
        while True:
            try:
                shard = ShardStore(self.lake, topic, partition, self.memory_limit)
                break
            except QueryError as exc:  # the previous owner still holds the file
                if isinstance(exc, ShardLost) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        shard.decider = self.decider
        shard.ledger = self.ledger
        if self.chain is not None:
            shard.chain = Chain(*self.chain)
            shard.publish_checkpoints = self.publish_checkpoints
        shard.arrow_cache = self.arrow_cache
        with self._lock:
            self.shards[(topic, partition)] = shard
        log.info("opened shard %s at offset %d", shard.shard, shard.next_offset)
        return shard

    def apply(self, records: list[RawRecord], projector: Projector,
              publish: Callable[[list[dict]], None] | None = None) -> tuple[BatchStats, list]:
        by_tp: dict[tuple[str, int], list[RawRecord]] = {}
        for r in records:
            by_tp.setdefault((r.topic, r.partition), []).append(r)
        total, dead = BatchStats(), []
        self.catch_up(records)
        now = time.time()
        for (topic, partition), recs in by_tp.items():
            shard = self.open(topic, partition)
            stats, d = shard.apply(recs, projector, publish)
            total.add(stats)
            dead.extend(d)
            if shard.due(now):
                shard.publish(now)
        return total, dead

    def catch_up(self, records: list[RawRecord]) -> None:
        """Bring the ledger up to ``records``: every trust record appended before them judged (decision 0015)."""
        if self.reader is not None:
            self.reader.wait_for(records)
            self.ledger.absorb(self.reader.drain())
        else:
            self.ledger.absorb(records)

    def chain_tick(self) -> int:
        """Checkpoint every shard's partition whose oldest record not checkpointed waited long enough."""
        return sum(shard.chain_tick() for shard in list(self.shards.values()))

    def tick(self) -> None:
        """Publish every shard that has unpublished rows and waited long enough."""
        now = time.time()
        for shard in list(self.shards.values()):
            if shard.due(now):
                shard.publish(now)

    def release(self, tps: Iterable[tuple[str, int]]) -> None:
        """Publish and close the shards of partitions this worker no longer owns."""
        for tp in tps:
            with self._lock:
                shard = self.shards.pop(tp, None)
            if shard is not None:
                self._close(shard)

    def positions(self) -> dict[tuple[str, int], int]:
        return {(s.topic, s.partition): s.next_offset for s in list(self.shards.values())}

    def checkpoint(self) -> None:
        for shard in list(self.shards.values()):
            shard.checkpoint()

    def close(self) -> None:
        self.release(list(self.shards))
        if self.reader is not None:
            self.reader.close()

    @staticmethod
    def _close(shard: ShardStore) -> None:
        try:
            shard._dirty.update(TABLES)
            shard.publish()
            shard.checkpoint()
        except Exception as exc:  # noqa: BLE001 -- still close: the next owner re-publishes from the file
            log.warning("publishing shard %s on close failed: %s", shard.shard, exc)
        shard.close()
        log.info("closed shard %s", shard.shard)
