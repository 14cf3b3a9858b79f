"""Reading the log itself (not the views): one record at an exact position, and records as JSON.

``RecordReader.read(topic, partition, offset)`` assigns a throwaway consumer to exactly that
position (no consumer group is joined, nothing is committed), polls the one record and closes.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from modelog.wire.errors import BrokerError
from modelog.wire.settings import Settings


@dataclass(frozen=True)
class LogRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def consumer_config(settings: Settings, purpose: str) -> dict[str, Any]:
    """A consumer that is assigned partitions: never joins its group, never commits."""
    return settings.librdkafka(**{
        "group.id": f"modelog-server-{purpose}-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "allow.auto.create.topics": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": settings.heartbeat_ms,
    })


class RecordReader:
    """Fetches single records by (topic, partition, offset) from the broker."""

    def __init__(self, settings: Settings, timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._lock = threading.Lock()

    def read(self, topic: str, partition: int, offset: int) -> LogRecord | None:
        """The record at that position, or None if the broker did not return it within the timeout."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        try:
            consumer = Consumer(consumer_config(self.settings, "record"))
        except KafkaException as exc:
            raise BrokerError(f"cannot reach the broker: {exc}") from exc
        try:
            consumer.assign([TopicPartition(topic, partition, offset)])
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().fatal():
                        raise BrokerError(f"reading {topic}/{partition}: {msg.error()}")
                    continue
                if msg.offset() < offset:
                    continue
                if msg.offset() > offset:  # compacted away or deleted: not there
                    return None
                ts_type, ts = msg.timestamp()
                return LogRecord(msg.topic(), msg.partition(), msg.offset(), ts if ts_type else None, msg.key(),
                                 msg.value(), tuple(msg.headers() or ()))
            return None
        finally:
            consumer.close()


def jsonable(value: Any) -> Any:
    """A decoded Avro record as JSON: bytes become base64 text; maps and arrays recursively."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
