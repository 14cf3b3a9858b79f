"""``modelog audit verify``'s logic: recompute every partition's Merkle tree from the records read back, and
hold each ``LogCheckpoint`` against it. Pure: the records and checkpoints are handed in (decision 0023).

Feed :class:`Auditor` each partition's records in log order (partitions may interleave); it checks a
checkpoint as soon as the tree has every record before the checkpoint's ``next_offset``, so memory stays
one tree plus the records since the last good checkpoint (an offset and an 8-byte hint each). On the first
disagreement in a partition it names the record: the first one whose offset or content differs from the
checkpoint's hints -- *removed* (the log skips its offset or ends before it), *reordered* (its content is
another checkpointed record's), *changed* (its content is none of them), *inserted* (a record the
checkpoint never had) -- or, when every hint matches and the root still differs, the checkpoint itself
(*root_mismatch*: a falsified checkpoint, or a record before the interval changed). Later checkpoints of
that partition are not checked: the first difference is the finding.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .chain import HINT, record_leaf
from .merkle import CompactTree
from .rows import RawRecord

TP = tuple[str, int]


@dataclass
class Checkpoint:
    """A decoded ``LogCheckpoint`` (its payload), where it is on the log, and who signed it."""

    topic: str
    partition: int
    base_offset: int
    tree_size: int
    next_offset: int
    root_hash: bytes
    previous_size: int
    offsets: list[int]
    hints: bytes
    event_id: str = ""
    at: str = ""  # checkpoints topic/partition/offset of the record
    logged_ms: int | None = None
    signer: str | None = None  # principal of the verified key; None: unsigned
    key_id: str | None = None
    trust: str = "unsigned"  # signed | unsigned | a refusal reason (bad_signature, unknown_key, ...)
    detail: str = ""

    @classmethod
    def from_record(cls, record: dict, **extra) -> Checkpoint:
        return cls(record["topic"], record["partition"], record["base_offset"], record["tree_size"],
                   record["next_offset"], record["root_hash"], record["previous_size"], list(record["offsets"]),
                   record["hints"], event_id=record["envelope"]["event_id"], **extra)

    def hint(self, leaf: int) -> tuple[int, bytes] | None:
        """(offset, hint) of leaf number ``leaf`` if this checkpoint's interval holds it."""
        i = leaf - self.previous_size
        if 0 <= i < len(self.offsets):
            return self.offsets[i], self.hints[i * HINT:(i + 1) * HINT]
        return None

    def well_formed(self) -> str | None:
        """Why this checkpoint cannot be a processor's, or None."""
        n = self.tree_size - self.previous_size
        if not 0 <= self.previous_size <= self.tree_size:
            return f"previous_size {self.previous_size} is not in 0..tree_size {self.tree_size}"
        if len(self.offsets) != n or len(self.hints) != n * HINT:
            return (f"{len(self.offsets)} offsets and {len(self.hints)} bytes of hints for the {n} records "
                    f"between sizes {self.previous_size} and {self.tree_size}")
        if len(self.root_hash) != 32:
            return f"root_hash has {len(self.root_hash)} bytes, not 32"
        if any(b <= a for a, b in zip(self.offsets, self.offsets[1:])) or (self.offsets and (
                self.offsets[0] < self.base_offset or self.offsets[-1] >= self.next_offset)):
            return "offsets are not increasing inside [base_offset, next_offset)"
        return None


@dataclass(frozen=True)
class Finding:
    """What is wrong, and where: ``kind`` is changed | removed | reordered | inserted | root_mismatch |
    malformed | bad_signature | no_partition."""

    kind: str
    topic: str
    partition: int
    offset: int | None
    detail: str
    checkpoint: Checkpoint | None = None

    def __str__(self) -> str:
        where = f"{self.topic}/{self.partition}" + (f"/{self.offset}" if self.offset is not None else "")
        return f"{self.kind} at {where}: {self.detail}"


class _Lineage:
    """One tree of one partition: the records from ``base`` on, and the checkpoints of that tree."""

    def __init__(self, topic: str, partition: int, base: int, checkpoints: list[Checkpoint]) -> None:
        self.topic, self.partition, self.base = topic, partition, base
        self.pending = deque(sorted(checkpoints, key=lambda c: (c.next_offset, c.tree_size)))
        self.tree = CompactTree()
        self.next = base  # the offset after the last record added
        self.start = 0  # tree size at the last checkpoint that matched: the interval below starts there
        self.interval: list[tuple[int, bytes]] = []  # (offset, hint) of every record since
        self.matched: list[Checkpoint] = []
        self.finding: Finding | None = None

    def add(self, rec: RawRecord) -> None:
        if self.finding is not None or rec.offset < self.base:
            return
        while self.pending and self.pending[0].next_offset <= rec.offset and self.finding is None:
            self._check(self.pending.popleft())
        if self.finding is not None:
            return
        leaf, content = record_leaf(rec)
        self.tree.append(leaf)
        self.next = rec.offset + 1
        self.interval.append((rec.offset, content[:HINT]))

    def finish(self) -> None:
        while self.pending and self.finding is None:
            self._check(self.pending.popleft())

    def _check(self, cp: Checkpoint) -> None:
        bad = cp.well_formed()
        if bad is not None:
            self.finding = Finding("malformed", self.topic, self.partition, None, f"checkpoint {cp.event_id} "
                                   f"({cp.at}) is not a valid checkpoint: {bad}", cp)
            return
        if self.tree.size == cp.tree_size and self.tree.root() == cp.root_hash:
            wrong = [k for k in range(max(cp.previous_size, self.start), cp.tree_size) if cp.hint(k) != self._ours(k)]
            if wrong:  # the root proves the records; hints that disagree with them are not a processor's
                self.finding = Finding("malformed", self.topic, self.partition, None, f"checkpoint {cp.event_id} "
                                       f"({cp.at}): its root matches but the hints of {len(wrong)} records do not", cp)
                return
            self.matched.append(cp)
            self.start = self.tree.size
            self.interval = []
            return
        self.finding = self._locate(cp)

    def _ours(self, leaf: int) -> tuple[int, bytes] | None:
        i = leaf - self.start
        return self.interval[i] if 0 <= i < len(self.interval) else None

    def _locate(self, cp: Checkpoint) -> Finding:
        def found(kind: str, offset: int | None, detail: str) -> Finding:
            return Finding(kind, self.topic, self.partition, offset,
                           detail + f" (checkpoint {cp.event_id} at {cp.at}: {cp.tree_size} records up to offset "
                                    f"{cp.next_offset - 1})", cp)

        if self.tree.size < cp.tree_size and cp.hint(self.tree.size) is None:  # no hint says which: a witness
            return found("removed", None, f"the log holds {self.tree.size} records of this tree below offset "
                         f"{cp.next_offset}, the checkpoint {cp.tree_size}: {cp.tree_size - self.tree.size} removed "
                         f"(the last record read is at offset {self.next - 1})")
        hints = {}  # content hint -> offset, from this checkpoint and the later ones (a record moved further)
        for later in [cp, *self.pending]:
            for k in range(later.previous_size, later.tree_size):
                h = later.hint(k)
                if h is not None:
                    hints.setdefault(h[1], h[0])
        prev = None
        for leaf in range(max(cp.previous_size, self.start), max(cp.tree_size, self.start + len(self.interval))):
            want, got = cp.hint(leaf), self._ours(leaf)
            if want == got:
                prev = got[0] if got else prev
                continue
            if want is None:  # the log has a record the checkpoint does not
                return found("inserted", got[0], "the log holds a record here that the checkpoint does not cover")
            if got is None:
                return found("removed", want[0], f"the checkpointed record at offset {want[0]} is missing: the log "
                             "ends before it" + (f" (last record at offset {prev})" if prev is not None else ""))
            if got[0] > want[0]:
                return found("removed", want[0], f"the checkpointed record at offset {want[0]} is missing: the log "
                             f"goes from offset {prev if prev is not None else '(start)'} to {got[0]}")
            if got[0] < want[0]:
                return found("inserted", got[0], f"a record at offset {got[0]} that the checkpoint does not have "
                             f"(it expects offset {want[0]} next)")
            elsewhere = hints.get(got[1])
            if elsewhere is not None and elsewhere != got[0]:
                return found("reordered", got[0], f"the record at offset {got[0]} is the one checkpointed at "
                             f"offset {elsewhere}")
            return found("changed", got[0], f"the record at offset {got[0]} is not the one checkpointed there "
                         f"(content digest {got[1].hex()}…, checkpointed {want[1].hex()}…)")
        return found("root_mismatch", None, f"every record since size {max(cp.previous_size, self.start)} matches "
                     f"the checkpoint's hints but the root does not (tree of {self.tree.size} records): the "
                     "checkpoint is falsified, or a record before them changed")


def witnessed(entries: dict, where: str) -> list[Checkpoint]:
    """Checkpoints a witness kept (``Report.witness()`` of an earlier run): size and root, no hints."""
    out = []
    for e in entries.values():
        out.append(Checkpoint(e["topic"], int(e["partition"]), int(e["base_offset"]), int(e["tree_size"]),
                              int(e["next_offset"]), bytes.fromhex(e["root_hash"]), int(e["tree_size"]), [], b"",
                              event_id=e.get("event_id", "witness"), at=f"witness {where}", trust="witness"))
    return out


@dataclass
class Report:
    records: int = 0
    checkpoints: int = 0  # checked
    matched: int = 0
    findings: list[Finding] = field(default_factory=list)
    last: Checkpoint | None = None  # the newest checkpoint that matched (by log time)
    uncovered: dict[TP, int] = field(default_factory=dict)  # records after the last matching checkpoint
    partitions: int = 0
    latest: dict[tuple[str, int, int], Checkpoint] = field(default_factory=dict)  # per tree, the largest matched

    def witness(self) -> dict:
        """What to keep outside the broker: per tree, the largest checkpoint that matched (``witnessed``)."""
        return {f"{t}/{p}/{b}": {"lineage": f"{t}/{p}/{b}", "topic": t, "partition": p, "base_offset": b,
                                  "tree_size": cp.tree_size, "next_offset": cp.next_offset,
                                  "root_hash": cp.root_hash.hex(), "event_id": cp.event_id}
                for (t, p, b), cp in sorted(self.latest.items())}

    @property
    def ok(self) -> bool:
        return not self.findings and self.matched > 0


class Auditor:
    """Hold ``checkpoints`` against the records fed to :meth:`add`; :meth:`finish` gives the report."""

    def __init__(self, checkpoints: list[Checkpoint]) -> None:
        groups: dict[tuple[str, int, int], list[Checkpoint]] = {}
        for cp in checkpoints:
            groups.setdefault((cp.topic, cp.partition, cp.base_offset), []).append(cp)
        self.lineages: dict[TP, list[_Lineage]] = {}
        for (t, p, base), cps in sorted(groups.items()):
            self.lineages.setdefault((t, p), []).append(_Lineage(t, p, base, cps))
        self.count = len(checkpoints)
        self.records = 0
        self.seen: dict[TP, int] = {}  # records read per partition

    def add(self, rec: RawRecord) -> None:
        self.records += 1
        tp = (rec.topic, rec.partition)
        self.seen[tp] = self.seen.get(tp, 0) + 1
        for lineage in self.lineages.get(tp, ()):
            lineage.add(rec)

    def finish(self, read: set[TP] | None = None) -> Report:
        """The report, once every partition was read to its end (``read``: the partitions that exist)."""
        rep = Report(records=self.records, checkpoints=self.count, partitions=len(read or self.seen))
        for tp, lineages in sorted(self.lineages.items()):
            if read is not None and tp not in read:
                rep.findings.append(Finding("no_partition", tp[0], tp[1], None, f"{len(lineages)} checkpoint "
                                            "lineage(s) name a partition the log does not have (deleted topic?)"))
                continue
            for lin in lineages:
                lin.finish()
                rep.matched += len(lin.matched)
                if lin.finding is not None:
                    rep.findings.append(lin.finding)
                for cp in lin.matched:
                    if cp.trust != "witness" and (rep.last is None or (cp.logged_ms or 0) >= (rep.last.logged_ms or 0)):
                        rep.last = cp
                    key = (cp.topic, cp.partition, cp.base_offset)
                    if key not in rep.latest or cp.tree_size > rep.latest[key].tree_size:
                        rep.latest[key] = cp
            main = max(lineages, key=lambda lin: lin.tree.size)
            if main.finding is None and main.interval:
                rep.uncovered[tp] = len(main.interval)
        for tp, n in self.seen.items():
            if tp not in self.lineages:
                rep.uncovered[tp] = n
        return rep
