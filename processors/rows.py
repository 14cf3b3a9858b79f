"""What every projection family shares: raw records, dead letters, and the column-wise row buffer.

Pure: imports neither faust nor duckdb.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

class Columns(defaultdict):
    """One table's rows: Python values column by column (``cols[name].append(v)``), then ``batches``: whole
    columns of arrays (numpy or Arrow, one item per row), appended by ``add_batch`` -- a columnar event's
    thousands of rows without a Python object per row. A column a batch lacks is NULL in its rows."""

    def __init__(self) -> None:
        super().__init__(list)
        self.batches: list[dict[str, Any]] = []

    def add_batch(self, **arrays: Any) -> None:
        self.batches.append(arrays)

    def merge(self, other: Columns) -> None:
        """Append ``other``'s rows."""
        for col, values in other.items():
            self[col].extend(values)
        self.batches.extend(other.batches)

    @property
    def num_rows(self) -> int:
        listed = len(next(iter(self.values()))) if self else 0
        return listed + sum(len(next(iter(b.values()))) for b in self.batches if b)


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
    return defaultdict(Columns)


def add(out: Rows, table: str, **values: Any) -> None:
    """Append one row to ``out[table]``."""
    cols = out[table]
    for k, v in values.items():
        cols[k].append(v)
