"""Rebuild: replay the log from offset zero into a fresh views file.

Uses the same projector and store as the live processor, so the result equals
the live views row for row. Reads with a plain consumer (assigned partitions,
no group commits) until every partition reaches the high watermark seen in
fetch responses (tansu's ListOffsets under-reports; fetch watermarks are right).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

from modelog.wire.keystore import keystore_for
from modelog.wire.settings import Settings
from modelog.wire.errors import BrokerError

from .chain import Chain, raw_headers
from .projection import RawRecord
from .projector import Projector
from .store import ViewStore

Progress = Callable[[int, int], None]  # (records done, records known so far)


# Records whose Kafka key marks them as the key registry's, the admin grants' or the policies': a rebuild
# applies them first, so that every other record is judged against the registry as of its log time whatever
# order the partitions are read in (decision 0015). Applying them again in the full pass changes nothing.
TRUST_KEYS = (b"keys", b"access:", b"policy:")


def _keys(settings: Settings):
    """Sealed values open as they do live (decision 0018): with the key store for one views file; with a lake
    (MODELOG_LAKE) not at all, as the lake's shards keep them sealed -- so a rebuild equals the lake."""
    return None if settings.lake_path is not None else keystore_for(settings.home)


def replay(settings: Settings, store: ViewStore, progress: Progress | None = None, batch: int = 2000,
           idle_timeout: float = 10.0, chain: Chain | None = None) -> int:
    """Project every record of the projected topics into ``store``. Returns the number of records read.

    Two passes: the trust records first (keys, admin grants, policies: ``TRUST_KEYS``) in log-time order
    (they come from several partitions and judge each other: a grant makes the signer of a later key
    registration an admin), then everything."""
    trust: list[RawRecord] = []
    _replay(settings, store, None, batch, idle_timeout,
            only=lambda key: key is not None and key.startswith(TRUST_KEYS), collect=trust)
    trust.sort(key=lambda r: (r.timestamp_ms if r.timestamp_ms is not None else -1, r.topic, r.partition, r.offset))
    projector = Projector(keys=_keys(settings))
    for i in range(0, len(trust), batch):
        store.apply(trust[i:i + batch], projector)
    # the partitions' Merkle trees (decision 0023) over the full pass, in log order, so that the live processor
    # that opens these views goes on with the same trees; a rebuild publishes no checkpoint of its own
    store.chain = chain
    return _replay(settings, store, progress, batch, idle_timeout)


def _replay(settings: Settings, store: ViewStore, progress: Progress | None, batch: int, idle_timeout: float,
            only: Callable[[bytes | None], bool] | None = None, collect: list[RawRecord] | None = None) -> int:
    topics = settings.projected_topics
    consumer = Consumer(settings.librdkafka(**{
        "group.id": f"modelog-rebuild-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "allow.auto.create.topics": False,
        "fetch.wait.max.ms": 100,
    }))
    try:
        meta = consumer.list_topics(timeout=30)
        parts = sorted((t, p) for t in topics if t in meta.topics for p in meta.topics[t].partitions)
        if not parts:
            return 0
        consumer.assign([TopicPartition(t, p, 0) for t, p in parts])
        projector = Projector(keys=_keys(settings))
        done, high = 0, {tp: None for tp in parts}
        position = {tp: 0 for tp in parts}
        last_data = time.monotonic()
        while True:
            msgs = consumer.consume(batch, timeout=0.2)
            if msgs:
                last_data = time.monotonic()
            records = []
            for m in msgs:
                if m.error():
                    raise BrokerError(f"reading {m.topic()}: {m.error()}")
                ts_type, ts = m.timestamp()
                position[(m.topic(), m.partition())] = m.offset() + 1
                if only is not None and not only(m.key()):
                    continue
                records.append(RawRecord(m.topic(), m.partition(), m.offset(), ts if ts_type else None,
                                         m.key(), m.value(), raw_headers(m.headers())))
            if records:
                if collect is not None:
                    collect.extend(records)
                else:
                    store.apply(records, projector)
                done += len(records)
            for t, p in parts:
                try:
                    _, hi = consumer.get_watermark_offsets(TopicPartition(t, p), cached=True)
                except KafkaException:
                    continue
                if hi >= 0:
                    high[(t, p)] = hi
            if progress:
                progress(done, sum(h for h in high.values() if h) or done)
            if all(h is not None and position[tp] >= h for tp, h in high.items()):
                return done
            if time.monotonic() - last_data > idle_timeout:
                return done
    finally:
        consumer.close()


class _Bar:
    """A small progress bar on stderr (a line per update when not a terminal)."""

    def __init__(self, label: str = "rebuild") -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < (0.1 if self.tty else 2.0) and done < total:
            return
        self.last = now
        frac = done / total if total else 1.0
        bar = "#" * int(frac * 30)
        rate = done / max(now - self.start, 1e-9)
        line = f"{self.label} [{bar:<30}] {done}/{total} records ({rate:,.0f}/s)"
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def rebuild(settings: Settings, output: Path | None = None, show_progress: bool = True) -> tuple[Path, int]:
    """Replay the log into ``output`` (default: replace the views file atomically). Returns (path, records)."""
    target = Path(output) if output else settings.views_path
    tmp = target.with_name(f".{target.name}.rebuild-{os.getpid()}")
    for p in (tmp, tmp.with_name(tmp.name + ".wal")):
        p.unlink(missing_ok=True)
    instance_id = None
    if output is None and target.exists():
        import duckdb

        con = duckdb.connect(str(target), read_only=True)
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'instance_id'").fetchone()
            instance_id = row[0] if row else None
        except duckdb.Error:
            instance_id = None
        finally:
            con.close()
    store = ViewStore(tmp, instance_id=instance_id, memory_limit=settings.duckdb_memory_limit)
    bar = _Bar() if show_progress else None
    try:
        n = replay(settings, store, progress=bar, chain=Chain(settings.checkpoint_every, 0))
        store.checkpoint()
    finally:
        store.close()
        if bar:
            bar.close()
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)
    Path(str(target) + ".wal").unlink(missing_ok=True)
    return target, n
