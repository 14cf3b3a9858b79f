"""Emitters: the one write primitive every SDK call reduces to.

An emitter is a small protocol (``emit``, ``flush``, ``close``). ``KafkaEmitter``
publishes to the tracking topic with an idempotent, acks=all producer and never
blocks the caller on the network; ``flush`` waits (bounded) and raises
``DeliveryError`` if any event was not acknowledged. ``MemoryEmitter`` keeps
events in a list, for unit tests of the SDK itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Protocol

from confluent_kafka import KafkaException, Producer

from modelog.wire.codec import Codec
from modelog.wire.settings import Settings
from modelog.wire.errors import DeliveryError
from modelog.wire.envelope import Event
from modelog.wire.topics import ensure_topics


class Emitter(Protocol):
    def emit(self, events: Sequence[Event]) -> None: ...
    def flush(self, timeout: float | None = None) -> None: ...
    def close(self) -> None: ...


class MemoryEmitter:
    """Keeps emitted events in ``self.events`` (validated and encoded, like the Kafka emitter)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.encoded: list[bytes] = []
        self._codec = Codec()

    def emit(self, events: Sequence[Event]) -> None:
        for e in events:
            self.encoded.append(self._codec.encode(e.event_type, e.record))
            self.events.append(e)

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self) -> None:
        return None


class KafkaEmitter:
    """Publishes events keyed by entity key, each to its type's topic (``Settings.topic_for``),
    or every event to ``topic`` when one is given."""

    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        self.settings = settings
        self.topic = topic
        ensure_topics(settings)
        self._codecs: dict[str, Codec] = {}
        self._producer = Producer(settings.librdkafka(**{
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",
            "message.max.bytes": 16 * 1024 * 1024,
            "delivery.timeout.ms": int(max(settings.flush_timeout, 1) * 1000),
            "allow.auto.create.topics": False,
        }))
        self._lock = threading.Lock()
        self._failures: list[tuple[str, str]] = []
        self._pending = 0
        self.delivered = 0
        # highest acknowledged offset per (topic, partition): read-your-writes by offset
        self.positions: dict[tuple[str, int], int] = {}
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="modelog-emitter-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    def _on_delivery(self, event_type: str):
        def callback(err, msg) -> None:
            with self._lock:
                self._pending -= 1
                if err is not None:
                    self._failures.append((event_type, str(err)))
                else:
                    self.delivered += 1
                    p, o = (msg.topic(), msg.partition()), msg.offset()
                    if o > self.positions.get(p, -1):
                        self.positions[p] = o
        return callback

    def emit(self, events: Sequence[Event]) -> None:
        if self._closed.is_set():
            raise DeliveryError("cannot publish: this client was closed", [(e.event_type, "closed") for e in events])
        for e in events:
            topic = self.topic or self.settings.topic_for(e.event_type)
            codec = self._codecs.get(topic)
            if codec is None:
                codec = self._codecs[topic] = Codec(self.settings.schema_registry_url, topic)
            value = codec.encode(e.event_type, e.record)
            headers = [("modelog.event_type", e.event_type.encode()), ("modelog.event_id", e.event_id.encode())]
            with self._lock:
                self._pending += 1
            while True:
                try:
                    self._producer.produce(topic, value=value, key=e.key.encode(), headers=headers,
                                           on_delivery=self._on_delivery(e.event_type))
                    break
                except BufferError:  # local queue full: let deliveries drain (backpressure)
                    self._producer.poll(0.05)
                except KafkaException as exc:
                    with self._lock:
                        self._pending -= 1
                    raise DeliveryError(f"cannot publish {e.event_type}: {exc}", [(e.event_type, str(exc))]) from exc

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every emitted event is acknowledged; raise DeliveryError if any failed or timed out."""
        if self._closed.is_set():
            return  # close() flushed everything that was emitted
        timeout = self.settings.flush_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        remaining = self._producer.flush(timeout)
        while remaining and time.monotonic() < deadline:
            remaining = self._producer.flush(max(0.0, deadline - time.monotonic()))
        with self._lock:
            failures, self._failures = self._failures, []
            pending = self._pending
        if failures:
            kinds = ", ".join(sorted({f"{t}: {r}" for t, r in failures})[:5])
            raise DeliveryError(f"{len(failures)} event(s) were not delivered to Kafka ({kinds})", failures)
        if remaining or pending:
            raise DeliveryError(
                f"{max(remaining, pending)} event(s) not acknowledged by Kafka at "
                f"{self.settings.resolve_bootstrap()} within {timeout:.0f}s (MODELOG_FLUSH_TIMEOUT)",
                [("unknown", "timeout")] * max(remaining, pending),
            )

    def close(self) -> None:
        if self._closed.is_set():
            return
        try:
            self.flush()
        finally:
            self._closed.set()
            self._poller.join(timeout=1)
            # Release librdkafka's connections now, not at garbage collection: a lingering
            # handle logs "Disconnected" noise when the broker stops later.
            close = getattr(self._producer, "close", None)
            if close is not None:
                close()
