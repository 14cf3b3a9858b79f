"""What every projection family shares: raw records, dead letters, and the column-wise row buffer.

Pure: imports neither faust nor duckdb.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

Columns = dict[str, list]
Rows = dict[str, Columns]


@dataclass(frozen=True)
class RawRecord:
    """One Kafka record as read from the log."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()  # Kafka headers (a signature's key id and signature, ...)


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be projected, and why."""

    record: RawRecord
    reason: str  # short code: malformed_body, unknown_schema, invalid_event, ...
    detail: str


def new_rows() -> Rows:
    return defaultdict(lambda: defaultdict(list))


def add(out: Rows, table: str, **values: Any) -> None:
    """Append one row to ``out[table]``."""
    cols = out[table]
    for k, v in values.items():
        cols[k].append(v)
