"""Where a partition really ends, as the broker's fetch responses say.

A fetch response carries the partition's high watermark, and reading up to it is reading everything the
broker acknowledged. tansu on ``s3://`` answers ``ListOffsets`` with an end behind that (10-50 records a
second after a producer stopped, on every partition, measured 2026-11-30), so a reader that stops at the
listed end misses the last acknowledged records. :func:`fetched_ends` reads each partition from the listed
end until the consumer reports the partition's end, and returns the offset it ended at. I/O only.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping

from confluent_kafka import Consumer, KafkaError, TopicPartition

from modelog.wire.errors import BrokerError
from modelog.wire.settings import Settings


def fetched_ends(settings: Settings, partitions: Iterable[tuple[str, int]],
                 listed: Mapping[tuple[str, int], int] | None = None, timeout: float = 15.0) -> dict[tuple[str, int], int]:
    """{(topic, partition): end offset} as reached by fetching, starting at ``listed`` ends (default 0). A
    partition that did not report its end within ``timeout`` seconds is left out (the caller keeps what it
    had); a broker error is raised as :class:`BrokerError`."""
    parts = list(partitions)
    if not parts:
        return {}
    listed = listed or {}
    consumer = Consumer(settings.librdkafka(**{
        "group.id": f"modelog-ends-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "allow.auto.create.topics": False,
        "fetch.wait.max.ms": 50,
    }))
    ends: dict[tuple[str, int], int] = {}
    try:
        consumer.assign([TopicPartition(t, p, max(0, listed.get((t, p)) or 0)) for t, p in parts])
        pending = set(parts)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for m in consumer.consume(500, timeout=0.1):
                err = m.error()
                key = (m.topic(), m.partition())
                if err is None:
                    ends[key] = max(ends.get(key, 0), m.offset() + 1)
                elif err.code() == KafkaError._PARTITION_EOF:
                    ends[key] = max(ends.get(key, 0), m.offset())
                    pending.discard(key)
                else:
                    raise BrokerError(f"fetching the end of {key[0]}/{key[1]}: {err}")
        for key in pending:  # no end reported: what was read is a lower bound, not an end
            ends.pop(key, None)
        return ends
    finally:
        consumer.close()


__all__ = ["fetched_ends"]
