"""``modelog audit verify``'s I/O: read the checkpoints and every projected partition from the broker, hold
them against each other (``audit.Auditor``), check who signed each checkpoint against the key registry the
log itself holds, and describe the records found wrong. Decision 0023.

Reads with plain consumers (assigned partitions from offset 0, no group, nothing committed) up to the
high watermark fetch responses carry (tansu's ListOffsets under-reports, see rebuild.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, TopicPartition

from modelog.wire.codec import Codec
from modelog.wire.errors import BrokerError, DecodeError
from modelog.wire.settings import Settings

from .audit import Auditor, Checkpoint, Finding, Report
from .chain import raw_headers
from .projector import Projector
from .rows import RawRecord
from .trust import Refused, Trust

Progress = Callable[[int, int], None]
TRUST_KEYS = (b"keys", b"access:", b"policy:")  # the key registry's records (as rebuild.TRUST_KEYS)
SIGNATURE_FAILURES = ("bad_signature", "unknown_key", "revoked_key", "actor_mismatch", "invalid_key", "not_admin")


@dataclass
class Verification:
    report: Report
    checkpoints: list[Checkpoint] = field(default_factory=list)
    described: dict[tuple[str, int, int], str] = field(default_factory=dict)  # what the record found wrong says now
    processor_keys: list[str] = field(default_factory=list)  # active keys of the expected signer
    witnessed: int = 0  # checkpoints a witness kept, held against the log too

    @property
    def ok(self) -> bool:
        return self.report.ok


def _consumer(settings: Settings) -> Consumer:
    return Consumer(settings.librdkafka(**{
        "group.id": f"modelog-audit-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "enable.auto.offset.store": False, "auto.offset.reset": "earliest", "allow.auto.create.topics": False,
        "fetch.wait.max.ms": 100, "check.crcs": True,
    }))


def scan(settings: Settings, topics: tuple[str, ...], handle: Callable[[RawRecord], None],
         progress: Progress | None = None, idle_timeout: float = 10.0, batch: int = 2000) -> set[tuple[str, int]]:
    """Call ``handle`` with every record of ``topics``, in log order per partition. Returns the partitions."""
    consumer = _consumer(settings)
    try:
        meta = consumer.list_topics(timeout=30)
        parts = sorted((t, p) for t in topics if t in meta.topics for p in meta.topics[t].partitions)
        if not parts:
            return set()
        consumer.assign([TopicPartition(t, p, 0) for t, p in parts])
        high: dict[tuple[str, int], int | None] = {tp: None for tp in parts}
        position = {tp: 0 for tp in parts}
        done, last_data = 0, time.monotonic()
        while True:
            msgs = consumer.consume(batch, timeout=0.2)
            if msgs:
                last_data = time.monotonic()
            for m in msgs:
                if m.error():
                    raise BrokerError(f"reading {m.topic()}/{m.partition()}: {m.error()}")
                ts_type, ts = m.timestamp()
                position[(m.topic(), m.partition())] = m.offset() + 1
                handle(RawRecord(m.topic(), m.partition(), m.offset(), ts if ts_type else None, m.key(), m.value(),
                                 raw_headers(m.headers())))
                done += 1
            for t, p in parts:
                try:
                    _, hi = consumer.get_watermark_offsets(TopicPartition(t, p), cached=True)
                except KafkaException:
                    continue
                if hi >= 0:
                    high[(t, p)] = hi
            if progress:
                progress(done, max(done, sum(h for h in high.values() if h)))
            if all(h is not None and position[tp] >= h for tp, h in high.items()):
                return set(parts)
            if time.monotonic() - last_data > idle_timeout:
                return set(parts)
    finally:
        consumer.close()


def read_one(settings: Settings, topic: str, partition: int, offset: int, timeout: float = 10.0) -> RawRecord | None:
    consumer = _consumer(settings)
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = consumer.poll(0.2)
            if m is None or m.error():
                continue
            ts_type, ts = m.timestamp()
            return RawRecord(m.topic(), m.partition(), m.offset(), ts if ts_type else None, m.key(), m.value(),
                             raw_headers(m.headers()))
        return None
    finally:
        consumer.close()


def registry(trust_records: list[RawRecord]) -> Trust:
    """The key registry as the log holds it: its records judged in log-time order, as a rebuild does."""
    trust = Trust()
    trust_records.sort(key=lambda r: (r.timestamp_ms if r.timestamp_ms is not None else -1, r.topic, r.partition,
                                      r.offset))
    Projector().prepare(trust_records, trust)
    return trust


def judge(trust: Trust, cp: Checkpoint, raw: RawRecord, record: dict) -> None:
    """Who signed checkpoint ``cp``: sets its ``trust`` (signed | unsigned | the refusal), signer and key."""
    try:
        check = trust.check_bytes(raw)
        trust.admit(check, "LogCheckpoint", record, raw)
    except Refused as exc:
        cp.trust = "unsigned" if exc.reason == "unsigned" else exc.reason
        cp.detail = exc.detail
        return
    if check.signed and check.key is not None:
        cp.trust, cp.signer, cp.key_id = "signed", check.key.principal, check.key_id
    else:
        cp.trust = "unsigned"


def describe(trust: Trust, codec: Codec, rec: RawRecord | None) -> str:
    """What a record says now: its key, event and whether its signature still verifies."""
    if rec is None:
        return "no record there now"
    parts = [f"key {rec.key.decode(errors='replace') if rec.key is not None else None!r}",
             f"{len(rec.value or b'')} bytes"]
    try:
        check = trust.check_bytes(rec)
        if check.signed and check.key is not None:
            parts.append(f"signed by {check.key.principal} ({check.key_id}), the signature verifies: the bytes are "
                         "the signer's (the record was moved, or its offset, timestamp or other headers changed)")
        elif check.signed:
            parts.append(f"signed with unknown key {check.key_id}")
        else:
            parts.append("unsigned")
    except Refused as exc:
        parts.append(f"{exc.reason}: {exc.detail}")
    try:
        decoded = codec.decode(rec.value)
        env = decoded.record["envelope"]
        parts.insert(0, f"{decoded.event_type} {env['event_id']} by {env['actor']['principal']}")
    except (DecodeError, KeyError, TypeError) as exc:
        parts.append(f"does not decode ({exc})")
    return "; ".join(parts)


def verify(settings: Settings, progress: Progress | None = None, idle_timeout: float = 10.0,
           witness: list[Checkpoint] = ()) -> Verification:
    """Hold every checkpoint on the log -- and those a witness kept (``audit.witnessed``) -- against the
    records the broker serves now."""
    codec = Codec()
    raws: list[tuple[Checkpoint, RawRecord, dict]] = []
    bad: list[Finding] = []

    def take_checkpoint(raw: RawRecord) -> None:
        at = f"{raw.topic}/{raw.partition}/{raw.offset}"
        try:
            decoded = codec.decode(raw.value)
            if decoded.event_type != "LogCheckpoint":
                raise DecodeError("unexpected_event", f"a {decoded.event_type} on the checkpoints topic")
            cp = Checkpoint.from_record(decoded.record, at=at, logged_ms=raw.timestamp_ms)
        except (DecodeError, KeyError, TypeError) as exc:
            bad.append(Finding("malformed", raw.topic, raw.partition, raw.offset,
                               f"the checkpoints topic holds a record that is not a checkpoint: {exc}"))
            return
        raws.append((cp, raw, decoded.record))

    scan(settings, (settings.checkpoints_topic,), take_checkpoint, idle_timeout=idle_timeout)
    auditor = Auditor([cp for cp, _, _ in raws] + list(witness))
    trust_records: list[RawRecord] = []

    def take(rec: RawRecord) -> None:
        auditor.add(rec)
        if rec.key is not None and rec.key.startswith(TRUST_KEYS):
            trust_records.append(rec)

    parts = scan(settings, settings.projected_topics, take, progress, idle_timeout)
    report = auditor.finish(parts)
    trust = registry(trust_records)
    for cp, raw, record in raws:
        judge(trust, cp, raw, record)
        if cp.trust in SIGNATURE_FAILURES:  # a falsified or forged checkpoint
            bad.append(Finding(cp.trust, cp.topic, cp.partition, None,
                               f"checkpoint {cp.event_id} at {cp.at} does not verify: {cp.detail}", cp))
    report.findings = bad + report.findings
    out = Verification(report, [cp for cp, _, _ in raws], witnessed=len(witness))
    out.processor_keys = [k.key_id for k in trust.keys.values()
                          if k.principal == settings.processor_id and k.revoked_at is None]
    for f in report.findings:
        if f.offset is not None and f.kind in ("changed", "reordered", "inserted"):
            out.described[(f.topic, f.partition, f.offset)] = describe(
                trust, codec, read_one(settings, f.topic, f.partition, f.offset))
    return out
