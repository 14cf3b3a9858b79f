"""The live feed: one background Kafka consumer per server process, fanned out to SSE subscribers.

It reads the log itself, not the views: every partition of the tracking and alerts topics is
assigned (no consumer group is joined, nothing is committed) at the end of the log as it is when the
feed starts. On the embedded broker ListOffsets LATEST may under-report the end (shared BROKER.md),
so -- like ``modelog alerts tail`` -- the feed starts at the listed offset and takes each partition's
fetch-carried high watermark (``get_watermark_offsets(cached=True)``) as its boundary: records below
it are history and skipped. Once every partition has a boundary the feed is ready. Records are
decoded with the Codec, deduplicated by event id (re-sent records arrive twice), turned into
``metrics`` / ``run`` / ``decision`` / ``alert`` items and put on the asyncio queue of every
subscriber whose filters match. A subscriber sees what the feed reads after it subscribed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from modelog.consumers.alerts import alert_payload
from modelog.wire import metric_columns
from modelog.wire.codec import Codec
from modelog.wire.errors import DecodeError
from modelog.wire.settings import Settings

log = logging.getLogger("modelog.server.stream")

QUEUE_SIZE = 10_000  # items per subscriber; a subscriber that falls this far behind is disconnected
DEDUPE = 100_000  # event ids remembered


@dataclass(frozen=True)
class Item:
    kind: str  # metrics | run | decision | alert
    event_id: str
    data: dict[str, Any]
    run_id: str | None = None
    model: str | None = None


@dataclass(eq=False)
class Subscription:
    loop: asyncio.AbstractEventLoop
    run_id: str | None = None
    model: str | None = None
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False

    def wants(self, item: Item) -> bool:
        if item.kind in ("metrics", "run"):
            return self.run_id is None or item.run_id == self.run_id
        return self.model is None or item.model == self.model

    def _put(self, item: Item | None) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
            self.queue = asyncio.Queue(1)
            self.queue.put_nowait(None)  # ends the stream: the client reconnects

    def offer(self, item: Item | None) -> None:
        try:
            self.loop.call_soon_threadsafe(self._put, item)
        except RuntimeError:  # its loop is closed
            pass


def to_item(record: dict[str, Any], event_type: str, topic: str, partition: int, offset: int) -> Item | None:
    """The live item of one decoded event, or None if it is not one the feed carries."""
    env = record["envelope"]
    eid = env["event_id"]
    if event_type == "MetricsLogged":
        return Item("metrics", eid, {"run_id": record["run_id"], "points": metric_columns.points(record),
                                      "event_id": eid},
                    run_id=record["run_id"])
    if event_type == "RunStarted":
        return Item("run", eid, {"run_id": record["run_id"], "status": "RUNNING", "experiment": record["experiment"],
                                 "name": record["name"], "start_time": record["start_time"], "event_id": eid},
                    run_id=record["run_id"])
    if event_type == "RunEnded":
        return Item("run", eid, {"run_id": record["run_id"], "status": record["status"], "error": record.get("error"),
                                 "end_time": record["end_time"], "event_id": eid}, run_id=record["run_id"])
    if event_type == "RequestDecided":
        return Item("decision", eid, {"request_id": record["request_id"], "model": record["model"],
                                      "outcome": record["outcome"], "reason": record["reason"],
                                      "decided_at": record["decided_at"], "event_id": eid}, model=record["model"])
    if event_type == "AlertChanged":
        return Item("alert", eid, alert_payload(record, topic, partition, offset), model=record["model"])
    return None


class LiveFeed:
    """The server's one consumer of the live log, started on the first subscription."""

    def __init__(self, settings: Settings, ready_timeout: float = 30.0) -> None:
        self.settings = settings
        self.topics = (settings.tracking_topic, settings.alerts_topic)
        self.ready_timeout = ready_timeout
        self.codec = Codec(settings.schema_registry_url)
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    # -- subscribers ------------------------------------------------------------------
    def subscribe(self, run_id: str | None = None, model: str | None = None) -> Subscription:
        sub = Subscription(asyncio.get_running_loop(), run_id, model)
        with self._lock:
            self._subs.add(sub)
            if self._thread is None or (not self._thread.is_alive() and not self._stop.is_set()):
                self.error = None
                self._ready.clear()
                self._thread = threading.Thread(target=self._run, name="modelog-live-feed", daemon=True)
                self._thread.start()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    # -- dispatch (also the unit tests' entry) ------------------------------------------
    def dispatch(self, topic: str, partition: int, offset: int, value: bytes | None) -> Item | None:
        try:
            decoded = self.codec.decode(value)
        except DecodeError:
            return None
        item = to_item(decoded.record, decoded.event_type, topic, partition, offset)
        if item is None:
            return None
        if item.event_id in self._seen:
            return None
        self._seen[item.event_id] = None
        if len(self._seen) > DEDUPE:
            self._seen.popitem(last=False)
        with self._lock:
            subs = [s for s in self._subs if s.wants(item)]
        for s in subs:
            s.offer(item)
        return item

    # -- the consumer -----------------------------------------------------------------
    def _run(self) -> None:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        from modelog.server.log import consumer_config
        from modelog.wire.topics import ensure_topics

        consumer = None
        try:
            ensure_topics(self.settings)
            consumer = Consumer(consumer_config(self.settings, "live"))
            meta = consumer.list_topics(timeout=30)  # no topic= : that would auto-create it
            parts = [(t, p) for t in self.topics if t in meta.topics for p in sorted(meta.topics[t].partitions)]
            starts = []
            for t, p in parts:
                _, listed = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10, cached=False)
                starts.append(TopicPartition(t, p, max(listed, 0)))
            consumer.assign(starts)
            boundary: dict[tuple[str, int], int] = {}
            deadline = time.monotonic() + self.ready_timeout
            while not self._stop.is_set():
                msg = consumer.poll(0.2)
                if not self._ready.is_set():
                    for t, p in parts:
                        if (t, p) not in boundary:
                            _, hi = consumer.get_watermark_offsets(TopicPartition(t, p), cached=True)
                            if hi >= 0:
                                boundary[(t, p)] = hi
                    if len(boundary) == len(parts):
                        self._ready.set()
                    elif time.monotonic() > deadline:
                        raise RuntimeError(f"no fetch response for {sorted(set(parts) - set(boundary))} "
                                           f"within {self.ready_timeout:.0f}s")
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().fatal():
                        raise RuntimeError(str(msg.error()))
                    continue
                if msg.offset() < boundary.get((msg.topic(), msg.partition()), math.inf):
                    continue  # history
                self.dispatch(msg.topic(), msg.partition(), msg.offset(), msg.value())
        except (KafkaException, RuntimeError, OSError, Exception) as exc:  # noqa: BLE001 -- reported to subscribers
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("live feed stopped: %s", self.error)
        finally:
            if consumer is not None:
                consumer.close()
            with self._lock:
                subs = list(self._subs)
            for s in subs:
                s.offer(None)

    def close(self) -> None:
        self._stop.set()
        t = self._thread
        if t is not None:
            t.join(timeout=10)
        with self._lock:
            subs = list(self._subs)
        for s in subs:
            s.offer(None)


def live_feed(app) -> LiveFeed:
    feed = getattr(app.state, "live_feed", None)
    if feed is None:
        feed = app.state.live_feed = LiveFeed(app.state.settings)
    return feed
