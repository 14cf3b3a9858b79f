"""Building events: the envelope every event carries, and the Event value the emitter publishes."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from modelog.wire.settings import Settings
from modelog.wire.ids import uuid7
from modelog._version import __version__


@dataclass(frozen=True)
class Event:
    """One event ready to publish: its type, Kafka key (the entity key) and Avro record."""

    event_type: str
    key: str
    record: dict[str, Any]

    @property
    def event_id(self) -> str:
        return self.record["envelope"]["event_id"]


def now_micros() -> int:
    return time.time_ns() // 1000


class EventFactory:
    """Stamps envelopes with this process's actor and source."""

    def __init__(self, settings: Settings, program: str = "modelog-sdk") -> None:
        self._actor = {"principal": settings.principal, "kind": settings.actor_kind}
        self._source = {"host": socket.gethostname(), "pid": os.getpid(), "program": program, "sdk_version": __version__}

    def make(self, event_type: str, entity_type: str, key: str, **payload: Any) -> Event:
        envelope = {
            "event_id": uuid7(),
            "event_type": event_type,
            "occurred_at": now_micros(),
            "actor": self._actor,
            "source": self._source,
            "entity": {"type": entity_type, "key": key},
        }
        return Event(event_type, key, {"envelope": envelope, **payload})
