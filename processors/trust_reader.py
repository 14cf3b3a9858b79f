"""A worker's own reader of the trust records (decision 0015, amended for ``--workers N``). The I/O of ``ledger.py``.

One plain consumer per worker (every partition of the tracking topic assigned from offset 0, no group,
nothing committed) reads the log beside the worker's faust consumer, in a thread of its own. It keeps the
trust records (Kafka key ``keys``, ``access:...``, ``policy:...``) for the ledger and, for every
partition, how far it has read and the high watermark the last fetch response carried (right on the
embedded broker, where ListOffsets under-reports: see rebuild.py).

Before a worker decides a batch, :meth:`TrustReader.wait_for` blocks until the reader has caught up with it:

1. on each tracking partition the batch has records of, the reader has read past the batch's last record
   there (so it has seen a fetch response made after those records were appended); for a batch of other
   topics (monitoring, alerts), every tracking partition up to the end ListOffsets reports at that moment;
2. then every tracking partition up to the high watermark its fetch responses carried at that point.

On one broker (the embedded one) a fetch response carries every partition, so after (1) the watermarks of
(2) are those of a moment after the batch's records were appended: the reader then holds every trust
record appended before them. With several brokers the watermarks of (2) are each broker's last answer,
made at most one fetch wait (``FETCH_WAIT_MS``) earlier.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from modelog.wire.errors import BrokerError
from modelog.wire.settings import Settings

from .chain import raw_headers
from .ledger import is_trust_record
from .rows import RawRecord

log = logging.getLogger("modelog.processor")

FETCH_WAIT_MS = 50  # as the projector's own fetches (_transport.FETCH_MAX_WAIT_MS)
CATCH_UP_TIMEOUT = 120.0  # seconds a batch waits for the reader before the worker gives up (and restarts)


class TrustReader:
    """Reads the tracking topic's trust records in a background thread; ``wait_for`` a batch, then ``drain``."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.tracking_topic
        self.settings = settings
        self.consumer = _consumer(settings)  # the reader thread's alone (a Consumer is not for two threads)
        self._lister: Consumer | None = None  # the deciding thread's, for ListOffsets
        meta = self.consumer.list_topics(self.topic, timeout=30).topics.get(self.topic)
        if meta is None or not meta.partitions:
            raise BrokerError(f"topic {self.topic} has no partitions")
        self.partitions = sorted(meta.partitions)
        self.consumer.assign([TopicPartition(self.topic, p, 0) for p in self.partitions])
        self.read = {p: 0 for p in self.partitions}  # next offset to read per partition
        self.ends: dict[int, int] | None = None  # the high watermarks of the last fetch responses (all known)
        self.pending: list[RawRecord] = []  # trust records read, not drained yet
        self.failure: BaseException | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._need: dict[int, int] = {}
        self._thread = threading.Thread(target=self._run, name="modelog-trust-reader", daemon=True)

    def start(self) -> TrustReader:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                msgs = self.consumer.consume(1000, timeout=0.1)
                trust, last = [], {}
                for m in msgs:
                    if m.error():
                        raise BrokerError(f"reading {m.topic()}: {m.error()}")
                    last[m.partition()] = m.offset() + 1
                    if is_trust_record(m.key()):
                        ts_type, ts = m.timestamp()
                        trust.append(RawRecord(m.topic(), m.partition(), m.offset(), ts if ts_type else None,
                                               m.key(), m.value(), raw_headers(m.headers())))
                ends = self._highwaters()  # after the messages: at least as fresh as the responses they came in
                with self._cond:
                    self.pending.extend(trust)
                    for p, o in last.items():
                        self.read[p] = max(self.read[p], o)
                    if ends is not None:
                        self.ends = ends
                    self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 -- the deciding thread raises it (the worker restarts)
            log.error("trust reader stopped: %s", exc)
            with self._cond:
                self.failure = exc
                self._cond.notify_all()

    def _highwaters(self) -> dict[int, int] | None:
        out = {}
        for p in self.partitions:
            try:
                _, hi = self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), cached=True)
            except KafkaException:
                return None
            if hi is None or hi < 0:
                return None
            out[p] = hi
        return out

    def _listed(self) -> dict[int, int]:
        if self._lister is None:
            self._lister = _consumer(self.settings)
        out = {}
        for p in self.partitions:
            _, hi = self._lister.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10, cached=False)
            out[p] = max(hi, 0)
        return out

    def targets(self, records: Iterable[RawRecord]) -> dict[int, int]:
        """Step 1's offsets for a batch: per tracking partition, the offset the reader must have read up to."""
        need: dict[int, int] = {}
        other = False
        for r in records:
            if r.topic == self.topic:
                need[r.partition] = max(need.get(r.partition, 0), r.offset + 1)
            else:
                other = True
        if other:
            for p, o in self._listed().items():
                need[p] = max(need.get(p, 0), o)
        return need

    def wait_for(self, records: Iterable[RawRecord], timeout: float = CATCH_UP_TIMEOUT) -> None:
        """Block until the reader holds every trust record appended before ``records`` (see the module doc)."""
        deadline = time.monotonic() + timeout
        self._wait(lambda: self.targets_met(self._need), deadline, "the batch's own records",
                   need=self.targets(records))
        self._wait(lambda: self.ends is not None, deadline, "a first fetch response")
        with self._cond:
            ends = dict(self.ends or {})
        self._wait(lambda: self.targets_met(ends), deadline, "the high watermarks", need=ends)

    def targets_met(self, need: dict[int, int]) -> bool:
        return all(self.read.get(p, 0) >= o for p, o in need.items())

    def _wait(self, done, deadline: float, what: str, need: dict[int, int] | None = None) -> None:
        with self._cond:
            self._need = need or {}
            while True:
                if self.failure is not None:
                    raise BrokerError(f"the trust reader failed: {self.failure}")
                if done():
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    behind = {p: (self.read.get(p, 0), o) for p, o in self._need.items() if self.read.get(p, 0) < o}
                    raise BrokerError(f"the trust reader did not catch up with {what} of {self.topic} in time "
                                      f"(partition: (read, needed) {behind})")
                self._cond.wait(min(left, 1.0))

    def drain(self) -> list[RawRecord]:
        with self._cond:
            out, self.pending = self.pending, []
        return out

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self.consumer.close()
        if self._lister is not None:
            self._lister.close()


def _consumer(settings: Settings) -> Consumer:
    return Consumer(settings.librdkafka(**{
        "group.id": f"modelog-trust-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "enable.auto.offset.store": False, "auto.offset.reset": "earliest", "allow.auto.create.topics": False,
        "fetch.wait.max.ms": FETCH_WAIT_MS,
    }))
