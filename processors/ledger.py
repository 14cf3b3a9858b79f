"""The trust records of the whole log for a projector worker that owns only some partitions. Pure: no I/O.

With ``modelog process --workers N`` (decision 0009) a worker projects the partitions the consumer group
gives it, but the key registry, the grants and the require-signatures switch (``trust.Trust``) are written
by events on other partitions: the ``keys`` partition, each principal's ``access:<principal>``, the
``policy:*`` one. A :class:`Ledger` holds them for the worker: the trust reader (``trust_reader.py``) feeds
it every trust record of the tracking topic (the records whose Kafka key is a trust key, ``TRUST_KEYS``,
exactly those a rebuild applies first), and the ledger judges each one once, in log-time order, with the
same code the single processor runs (``Projector.prepare`` on a ``Trust``): admitted records teach the
registry, refused ones keep their dead-letter reason.

A shard then judges its own records with :meth:`Ledger.view`, a :class:`JudgedTrust` over the ledger's
registry: an ordinary record is checked against the registry as of its log time, as the single processor
does; a trust record (judged already by the ledger, found by its log position) gets the ledger's verdict --
the same reason and detail, and the registry is not taught twice. Every worker reads the same trust
records and judges them in the same order, so every worker, and the single processor's rebuild, agree.

The rule for "as of its log position" across partitions (decision 0015, amended): a shard decides a
record only once its worker's trust reader has read every tracking partition up to its end as of a moment
after that record was appended (``trust_reader.TrustReader.wait_for``); the registry is then consulted as
of the record's log time. So a record is judged with every trust record appended before it, wherever
that is, and with none whose log time is later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .projector import Projector
from .rows import RawRecord
from .trust import Check, Refused, Trust, record_time

# Records whose Kafka key marks them as the key registry's, the admin grants' or the policies' (rebuild.py and
# verify.py hold the same prefixes): the SDK, the CLI and the HTTP server publish every trust event so.
TRUST_KEYS = (b"keys", b"access:", b"policy:")
# What a Trust learns from (besides RunStarted, which only a shard's own runs teach it)
TRUST_EVENTS = frozenset({"KeyRegistered", "KeyRevoked", "PolicySet", "AccessChanged"})

Position = tuple[str, int, int]  # topic, partition, offset


def is_trust_record(key: bytes | None) -> bool:
    return key is not None and key.startswith(TRUST_KEYS)


def position(rec: RawRecord) -> Position:
    return (rec.topic, rec.partition, rec.offset)


@dataclass
class JudgedTrust(Trust):
    """A ``Trust`` whose trust records were judged already (by a ``Ledger``): those get their verdict.

    ``verdicts``: log position -> the ``Check`` of an admitted trust record, or the ``Refused`` of one
    refused. Records at other positions are judged as ``Trust`` judges them. Learning changes only the runs
    (the shard's own); the registry is the ledger's, taught by the ledger alone."""

    verdicts: dict[Position, Check | Refused] = field(default_factory=dict)

    def check_bytes(self, rec: RawRecord) -> Check:
        verdict = self.verdicts.get(position(rec))
        if verdict is None:
            return super().check_bytes(rec)
        if isinstance(verdict, Refused):
            raise Refused(verdict.reason, verdict.detail)
        return verdict

    def admit(self, check: Check, event_type: str, record: dict, rec: RawRecord) -> None:
        if position(rec) in self.verdicts:
            return
        super().admit(check, event_type, record, rec)

    def learn(self, event_type: str, record: dict, rec: RawRecord) -> None:
        if event_type in TRUST_EVENTS:  # the ledger's alone (see Ledger: a trust event under another key)
            return
        super().learn(event_type, record, rec)


class Ledger:
    """The trust records a worker has read, judged once each in log-time order, and the registry they built."""

    def __init__(self, projector: Projector | None = None) -> None:
        self.projector = projector or Projector()
        self.trust = Trust()
        self.verdicts: dict[Position, Check | Refused] = {}

    def absorb(self, records: Iterable[RawRecord]) -> int:
        """Judge the trust records among ``records`` not judged yet, in log-time order (as a rebuild applies
        them: by log time, then topic, partition, offset). Returns how many were new."""
        fresh = sorted((r for r in records if is_trust_record(r.key) and position(r) not in self.verdicts),
                       key=lambda r: (record_time(r), r.topic, r.partition, r.offset))
        if not fresh:
            return 0
        prepared = self.projector.prepare(fresh, self.trust)
        for dl in prepared.dead:
            self.verdicts[position(dl.record)] = Refused(dl.reason, dl.detail)
        for event_id, _type, _record, rec, _writer in prepared.events:
            key_id = prepared.signed_by.get(event_id)
            self.verdicts[position(rec)] = Check(key_id is not None, key_id)
        return len(fresh)

    def view(self, runs: dict[str, str], run_lookup: Callable[[str], str | None] | None) -> JudgedTrust:
        """The registry as a shard judges its records with: the ledger's keys, grants and policy (shared, not
        copied), the shard's own runs."""
        t = self.trust
        return JudgedTrust(keys=t.keys, admin_grants=t.admin_grants, signature_policy=t.signature_policy,
                           grants=t.grants, runs=runs, run_lookup=run_lookup, verdicts=self.verdicts)
