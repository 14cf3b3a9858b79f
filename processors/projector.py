"""Decode -> validate -> project a batch of raw records. No faust, no duckdb here.

Whatever cannot be decoded, fails its schema's rules, or breaks a projection
becomes a :class:`DeadLetter` with a reason; the rest of the batch goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelog.wire.codec import Codec
from modelog.wire.errors import DecodeError, ValidationError
from modelog.wire.rulecheck import check

from .projection import DeadLetter, RawRecord, Rows, dead_letter_row, new_rows, project


@dataclass
class Prepared:
    """A batch after decoding and validation."""

    events: list[tuple[str, str, dict, RawRecord, str]] = field(default_factory=list)  # id, type, record, pos, writer
    dead: list[DeadLetter] = field(default_factory=list)

    @property
    def event_ids(self) -> list[str]:
        return [e[0] for e in self.events]


class Projector:
    """Turns raw records into rows for the base tables."""

    def __init__(self, codec: Codec | None = None) -> None:
        self.codec = codec or Codec()

    def prepare(self, records: list[RawRecord]) -> Prepared:
        out = Prepared()
        for rec in records:
            try:
                decoded = self.codec.decode(rec.value)
            except DecodeError as exc:
                out.dead.append(DeadLetter(rec, exc.reason, exc.detail))
                continue
            try:
                check(decoded.event_type, decoded.record)
                declared = decoded.record["envelope"]["event_type"]
                if declared != decoded.event_type:
                    raise ValidationError("envelope.event_type", declared, f"must equal the schema's type {decoded.event_type}")
            except ValidationError as exc:
                out.dead.append(DeadLetter(rec, "invalid_event", str(exc)))
                continue
            out.events.append((decoded.record["envelope"]["event_id"], decoded.event_type, decoded.record, rec,
                               decoded.writer_id))
        return out

    def rows(self, prepared: Prepared, known_ids: set[str]) -> tuple[Rows, list[DeadLetter], int]:
        """Rows of the events not in ``known_ids`` (first occurrence wins inside the batch).

        Returns (rows, dead letters incl. projection failures, number of events applied).
        """
        rows = new_rows()
        dead = list(prepared.dead)
        seen = set(known_ids)
        applied = 0
        for event_id, event_type, record, rec, writer in prepared.events:
            if event_id in seen:
                continue
            one = new_rows()
            try:
                project(event_type, record, rec, writer, one)
            except Exception as exc:  # a projection bug must not block the partition
                dead.append(DeadLetter(rec, "projection_failed", f"{type(exc).__name__}: {exc}"))
                continue
            seen.add(event_id)
            applied += 1
            for table, cols in one.items():
                target = rows[table]
                for col, values in cols.items():
                    target[col].extend(values)
        for dl in dead:
            dead_letter_row(dl, rows)
        return rows, dead, applied
