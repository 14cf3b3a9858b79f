"""Reading alerts off the log: ``AlertChanged`` records of the alerts topic as plain dicts, and ``tail``.

An alert is an incident the drift processor opened (``RAISED``) or closed (``RESOLVED``).
:func:`alert_payload` is the one JSON shape every alert consumer emits (``modelog alerts tail
--format json`` and the webhook body); :func:`format_text` is its one-line form.

Starting at the end on tansu
----------------------------
``tail`` without ``--from-beginning`` must print only alerts published after it started. The
usual way, ``auto.offset.reset=latest`` (or ListOffsets LATEST), is wrong on the embedded broker:
tansu answers the start of the newest batch + 1, so part of the history would be printed again
(see the shared BROKER.md). The high watermark carried in *fetch responses* is right. So
``tail`` assigns every partition at the ListOffsets answer (at or before the true end on tansu,
exact on Kafka), lets the first fetches come back, and takes each partition's fetch-carried high
watermark (``get_watermark_offsets(cached=True)``) as its boundary: records below it are history
and skipped, records at or above it are printed. Once every partition has a boundary, ``tail``
reports ready (``on_ready``); every alert published after that is printed. No consumer group is
joined (partitions are assigned) and nothing is committed.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from modelog.wire.codec import Codec
from modelog.wire.settings import Settings
from modelog.wire.errors import BrokerError, DecodeError

log = logging.getLogger("modelog.alerts")

EVENT_TYPE = "AlertChanged"
PAYLOAD_FIELDS = ("alert_id", "state", "model", "deployment", "rule", "severity", "window", "value", "threshold",
                  "message", "changed_at", "event_id", "idempotency_key", "topic", "partition", "offset")


def iso_micros(micros: int) -> str:
    """UTC ISO 8601 with microseconds and a ``Z``: ``2026-11-01T12:00:00.123456Z``."""
    return datetime.fromtimestamp(micros / 1e6, tz=timezone.utc).isoformat(timespec="microseconds")[:-6] + "Z"


def idempotency_key(alert_id: str, state: str) -> str:
    """``<alert_id>:<state>``: the same incident's same transition always has the same key."""
    return f"{alert_id}:{state}"


def alert_payload(record: dict[str, Any], topic: str | None = None, partition: int | None = None,
                  offset: int | None = None) -> dict[str, Any]:
    """The JSON shape of one alert (an ``AlertChanged`` record as decoded by the codec).

    Non-finite values (NaN, inf) become null, so the result is strict JSON.
    """
    env = record["envelope"]

    def finite(v: float | None) -> float | None:
        return v if v is not None and math.isfinite(v) else None

    return {
        "alert_id": record["alert_id"], "state": record["state"], "model": record["model"],
        "deployment": record["deployment"], "rule": record["rule"], "severity": record.get("severity", "warning"),
        "window": record["window"], "value": finite(record.get("value")), "threshold": finite(record.get("threshold")),
        "message": record["message"], "changed_at": iso_micros(env["occurred_at"]), "event_id": env["event_id"],
        "idempotency_key": idempotency_key(record["alert_id"], record["state"]),
        "topic": topic, "partition": partition, "offset": offset,
    }


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def format_text(alert: dict[str, Any]) -> str:
    """One line: time, state, model/deployment, rule, value vs threshold, message, alert_id."""
    value, threshold = alert["value"], alert["threshold"]
    op = "vs" if value is None or threshold is None else (">=" if value >= threshold else "<")
    when = alert["changed_at"][:23] + "Z"  # milliseconds
    return (f"{when}  {alert['state']:<8}  {alert['model']}/{alert['deployment']}  {alert['rule']}  "
            f"{_num(value)} {op} {_num(threshold)}  {alert['message']}  [{alert['alert_id']}]")


def matches(alert: dict[str, Any], model: str | None = None, deployment: str | None = None) -> bool:
    return (model is None or alert["model"] == model) and (deployment is None or alert["deployment"] == deployment)


def decode_alert(codec: Codec, msg) -> dict[str, Any] | None:
    """The payload of a consumed record, or None if it is not a decodable AlertChanged."""
    try:
        decoded = codec.decode(msg.value())
    except DecodeError as exc:  # the projector dead-letters it with this reason
        log.warning("%s/%s/%s is not a decodable event, skipped: %s", msg.topic(), msg.partition(), msg.offset(),
                    exc)
        return None
    if decoded.event_type != EVENT_TYPE:
        log.warning("%s/%s/%s is a %s, not an %s, skipped", msg.topic(), msg.partition(), msg.offset(),
                    decoded.event_type, EVENT_TYPE)
        return None
    return alert_payload(decoded.record, msg.topic(), msg.partition(), msg.offset())


def tail(settings: Settings, *, from_beginning: bool = False, model: str | None = None,
         deployment: str | None = None, stop: threading.Event | None = None,
         on_ready: Callable[[int], None] | None = None, ready_timeout: float = 30.0,
         poll_interval: float = 0.2) -> Iterator[dict[str, Any]]:
    """Yield alerts (payload dicts) of the alerts topic as they arrive, until ``stop`` is set.

    ``from_beginning``: replay the whole history first; otherwise only alerts published after
    ``on_ready(partitions)`` was called (see the module docstring for how the end is found).
    ``model`` / ``deployment`` filter. Raises BrokerError if the broker cannot be read.
    """
    from modelog.wire.topics import ensure_topics

    stop = stop or threading.Event()
    ensure_topics(settings)
    topic = settings.alerts_topic
    consumer = Consumer(settings.librdkafka(**{
        "group.id": f"modelog-tail-{uuid.uuid4().hex[:12]}",  # never joined (assign), never committed
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "allow.auto.create.topics": False,
        "fetch.wait.max.ms": 100,
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": settings.heartbeat_ms,
    }))
    codec = Codec(settings.schema_registry_url, topic)
    try:
        try:
            meta = consumer.list_topics(timeout=30)  # no topic= : that would auto-create it
            parts = sorted(meta.topics[topic].partitions) if topic in meta.topics else []
        except KafkaException as exc:
            raise BrokerError(f"cannot read {topic}: {exc}") from exc
        if not parts:
            raise BrokerError(f"topic {topic} has no partitions")
        boundary: dict[int, int] = {}
        if from_beginning:
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            boundary = {p: 0 for p in parts}
        else:
            starts = []
            for p in parts:
                try:  # ListOffsets: exact on Kafka, at or before the end on tansu (never past it)
                    _, listed = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
                except KafkaException as exc:
                    raise BrokerError(f"cannot read the offsets of {topic}/{p}: {exc}") from exc
                starts.append(TopicPartition(topic, p, max(listed, 0)))
            consumer.assign(starts)
        ready = len(boundary) == len(parts)
        if ready and on_ready:
            on_ready(len(parts))
        deadline = time.monotonic() + ready_timeout
        while not stop.is_set():
            msg = consumer.poll(poll_interval)
            if not ready:
                for p in parts:
                    if p not in boundary:
                        _, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)
                        if hi >= 0:  # known once a fetch response for p came back
                            boundary[p] = hi
                if len(boundary) == len(parts):
                    ready = True
                    if on_ready:
                        on_ready(len(parts))
                elif time.monotonic() > deadline:
                    missing = sorted(set(parts) - set(boundary))
                    raise BrokerError(f"no fetch response for {topic} partitions {missing} "
                                      f"within {ready_timeout:.0f}s")
            if msg is None:
                continue
            if msg.error():
                if msg.error().fatal():
                    raise BrokerError(f"reading {topic}: {msg.error()}")
                log.warning("reading %s: %s", topic, msg.error())  # librdkafka recovers by itself
                continue
            if msg.offset() < boundary.get(msg.partition(), math.inf):
                continue  # history (a fetch carries the high watermark, so the boundary is known here)
            alert = decode_alert(codec, msg)
            if alert is not None and matches(alert, model, deployment):
                yield alert
    finally:
        consumer.close()
