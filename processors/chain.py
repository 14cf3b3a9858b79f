"""Tamper evidence: an RFC 9162 Merkle tree over every record of every projected partition, and the
``LogCheckpoint`` records that sign its root every N records (decision 0023). Pure: no faust, no duckdb.

What a leaf covers (``leaf_input``): the record's topic, partition and offset, and a content digest
(``content_digest``) of its timestamp, key, value bytes and every header in order, duplicates and the
signature headers (``modelog.key_id``, ``modelog.sig``, ``modelog.event_id``) included. Lengths are
explicit (4-byte big-endian, 0xFFFFFFFF for null), so no two records encode alike::

    content = SHA-256("modelog.record.v1\\0" || i64 timestamp_ms (-1: none) || field(key) || field(value)
                      || u32 number of headers || (field(name) || field(value)) ...)
    leaf    = SHA-256(0x00 || "modelog.leaf.v1\\0" || field(topic) || u32 partition || i64 offset || content)

Every record counts, dead-lettered ones too: the tree is about the log, not the views. A checkpoint
carries, besides the root, the offsets and the first 8 bytes of the content digest of each record since
the previous checkpoint, so that ``modelog audit verify`` can name the first record changed, removed or
reordered; the root is what proves it (the 8-byte hints only locate).

:class:`PartitionChain` is one partition's state (the compact tree plus the records not checkpointed
yet); :class:`Chain` holds them all for the processor and says when a checkpoint is due (every
``every`` records of a partition, or ``seconds`` after its oldest record not checkpointed yet).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .merkle import CompactTree, leaf_hash
from .rows import RawRecord

ALGORITHM = "rfc9162-sha256/modelog.leaf.v1"
HINT = 8  # bytes of each record's content digest a checkpoint carries
_NULL = 0xFFFFFFFF
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_RECORD = b"modelog.record.v1\x00"
_NULL_FIELD = _U32.pack(_NULL)


def _field(b: bytes | None) -> bytes:
    return _U32.pack(_NULL) if b is None else _U32.pack(len(b)) + b


def _text(s: str | bytes) -> bytes:
    return _field(s.encode() if isinstance(s, str) else s)


def content_digest(timestamp_ms: int | None, key: bytes | None, value: bytes | None,
                   headers: Sequence[tuple[str | bytes, bytes | None]] = ()) -> bytes:
    """SHA-256 of what a record says (not where it is): timestamp, key, value and headers in order."""
    # one buffer before the value and one after it (three hash calls): this runs once per record
    head = [_RECORD, _I64.pack(-1 if timestamp_ms is None else timestamp_ms), _field(key),
            _U32.pack(_NULL) if value is None else _U32.pack(len(value))]
    tail = [_U32.pack(len(headers))]
    for k, v in headers:
        kb = k.encode() if isinstance(k, str) else k
        tail.append(_U32.pack(len(kb)))
        tail.append(kb)
        if v is None:
            tail.append(_NULL_FIELD)
        else:
            tail.append(_U32.pack(len(v)))
            tail.append(v)
    h = hashlib.sha256(b"".join(head))
    if value:
        h.update(value)
    h.update(b"".join(tail))
    return h.digest()


def leaf_input(topic: str, partition: int, offset: int, content: bytes) -> bytes:
    return b"modelog.leaf.v1\x00" + _text(topic) + _U32.pack(partition) + _I64.pack(offset) + content


def record_leaf(rec: RawRecord) -> tuple[bytes, bytes]:
    """(leaf hash, content digest) of a record."""
    content = content_digest(rec.timestamp_ms, rec.key, rec.value, rec.headers)
    return leaf_hash(leaf_input(rec.topic, rec.partition, rec.offset, content)), content


def raw_headers(headers) -> tuple[tuple[str, bytes | None], ...]:
    """A record's headers exactly as consumed (order and repeats kept), from a list, a dict or None."""
    if not headers:
        return ()
    items = headers.items() if isinstance(headers, dict) else headers
    return tuple((k.decode() if isinstance(k, bytes) else str(k), v) for k, v in items)


@dataclass
class PartitionChain:
    """One partition's tree: the records from ``base_offset`` on, up to ``next_offset`` (exclusive)."""

    topic: str
    partition: int
    base_offset: int = 0
    next_offset: int = 0
    tree: CompactTree = field(default_factory=CompactTree)
    checkpoint_size: int = 0  # tree size at the last checkpoint
    pending_since: float | None = None  # processor clock when the oldest record not checkpointed came
    pending_offsets: list[int] = field(default_factory=list)
    pending_hints: bytearray = field(default_factory=bytearray)

    @property
    def size(self) -> int:
        return self.tree.size

    def copy(self) -> PartitionChain:
        return PartitionChain(self.topic, self.partition, self.base_offset, self.next_offset, self.tree.copy(),
                              self.checkpoint_size, self.pending_since, list(self.pending_offsets),
                              bytearray(self.pending_hints))

    def append(self, rec: RawRecord, now: float) -> bool:
        """Add ``rec`` if it is past the tree's end (a redelivered record is skipped). Returns whether added."""
        if rec.offset < self.next_offset:
            return False
        if self.tree.size == 0 and self.next_offset == 0:
            self.base_offset = rec.offset  # 0, unless these views began after records the tree never saw
        leaf, content = record_leaf(rec)
        self.tree.append(leaf)
        self.next_offset = rec.offset + 1
        self.pending_offsets.append(rec.offset)
        self.pending_hints += content[:HINT]
        if self.pending_since is None:
            self.pending_since = now
        return True

    def checkpoint(self) -> dict:
        """The payload of a ``LogCheckpoint`` of the tree as it is now; resets the pending records."""
        out = {"topic": self.topic, "partition": self.partition, "base_offset": self.base_offset,
               "tree_size": self.tree.size, "next_offset": self.next_offset, "root_hash": self.tree.root(),
               "previous_size": self.checkpoint_size, "offsets": list(self.pending_offsets),
               "hints": bytes(self.pending_hints), "algorithm": ALGORITHM}
        self.checkpoint_size = self.tree.size
        self.pending_since = None
        self.pending_offsets = []
        self.pending_hints = bytearray()
        return out


@dataclass
class Chain:
    """Every partition's tree, and when to checkpoint: each ``every`` records of a partition, or
    ``seconds`` (0: never) after the oldest record not checkpointed yet."""

    every: int = 1000
    seconds: float = 60.0
    partitions: dict[tuple[str, int], PartitionChain] = field(default_factory=dict)

    def observe(self, records: Iterable[RawRecord], now: float,
                base: dict[tuple[str, int], PartitionChain]) -> tuple[dict[tuple[str, int], PartitionChain], list[dict]]:
        """Append ``records`` (in log order per partition) to copies of the trees they touch.

        ``base``: the committed trees (``self.partitions`` normally; a partition missing there starts
        empty). Returns (the changed trees, to commit with the batch; the checkpoints due, in order)."""
        changed: dict[tuple[str, int], PartitionChain] = {}
        due: list[dict] = []
        for rec in records:
            tp = (rec.topic, rec.partition)
            pc = changed.get(tp)
            if pc is None:
                old = base.get(tp)
                pc = changed[tp] = old.copy() if old is not None else PartitionChain(rec.topic, rec.partition)
            if pc.append(rec, now) and pc.size - pc.checkpoint_size >= self.every:
                due.append(pc.checkpoint())
        due.extend(self._timed(changed.values(), now))
        return changed, due

    def tick(self, now: float) -> tuple[dict[tuple[str, int], PartitionChain], list[dict]]:
        """Checkpoints of the partitions whose oldest record not checkpointed waited ``seconds``."""
        waiting = {tp: pc.copy() for tp, pc in self.partitions.items() if self._is_late(pc, now)}
        return waiting, list(self._timed(waiting.values(), now))

    def _is_late(self, pc: PartitionChain, now: float) -> bool:
        return (self.seconds > 0 and pc.size > pc.checkpoint_size and pc.pending_since is not None
                and now - pc.pending_since >= self.seconds)

    def _timed(self, chains: Iterable[PartitionChain], now: float) -> Iterable[dict]:
        for pc in chains:
            if self._is_late(pc, now):
                yield pc.checkpoint()

    def commit(self, changed: dict[tuple[str, int], PartitionChain]) -> None:
        self.partitions.update(changed)
