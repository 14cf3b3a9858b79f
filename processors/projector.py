"""Decode -> validate -> project a batch of raw records. No faust, no duckdb here.

Whatever cannot be decoded, fails its schema's rules, or breaks a projection
becomes a :class:`DeadLetter` with a reason; the rest of the batch goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelog.wire.codec import Codec
from modelog.wire.keystore import KeyStore
from modelog.wire.sealing import opener
from modelog.wire.errors import DecodeError, ValidationError
from modelog.wire.rulecheck import check

from .privacy import erased_key_ids, unseal
from .projection import DeadLetter, RawRecord, Rows, dead_letter_row, new_rows, project
from .trust import Refused, Trust


@dataclass
class Prepared:
    """A batch after decoding and validation."""

    events: list[tuple[str, str, dict, RawRecord, str]] = field(default_factory=list)  # id, type, record, pos, writer
    dead: list[DeadLetter] = field(default_factory=list)
    signed_by: dict[str, str] = field(default_factory=dict)  # event id -> key id of a verified signature

    @property
    def event_ids(self) -> list[str]:
        return [e[0] for e in self.events]


class Projector:
    """Turns raw records into rows for the base tables."""

    def __init__(self, codec: Codec | None = None, keys: KeyStore | None = None) -> None:
        """``keys``: the data keys sealed values are opened with (decision 0018). None: sealed values are
        projected as they are, ciphertext (the lake's shards: its Delta tables never hold plaintext)."""
        self.codec = codec or Codec()
        self.keys = keys

    def prepare(self, records: list[RawRecord], trust: Trust | None = None) -> Prepared:
        """Verify, decode and validate ``records`` in order. ``trust``: the key registry and policy as
        loaded from the views (None: an empty one -- a fresh install); admitted key, grant and policy
        events update it, so later records of the batch are judged by them."""
        out = Prepared()
        trust = trust if trust is not None else Trust()
        for rec in records:
            try:  # the signature over the raw bytes first: nothing is decoded before it verifies
                checked = trust.check_bytes(rec)
            except Refused as exc:
                out.dead.append(DeadLetter(rec, exc.reason, exc.detail))
                continue
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
            try:
                trust.admit(checked, decoded.event_type, decoded.record, rec)
            except Refused as exc:
                out.dead.append(DeadLetter(rec, exc.reason, exc.detail))
                continue
            trust.learn(decoded.event_type, decoded.record, rec)
            if checked.signed:
                out.signed_by[decoded.record["envelope"]["event_id"]] = checked.key_id or ""
            out.events.append((decoded.record["envelope"]["event_id"], decoded.event_type, decoded.record, rec,
                               decoded.writer_id))
        return out

    def rows(self, prepared: Prepared, known_ids: set[str], erased: set[str] | frozenset[str] = frozenset()
             ) -> tuple[Rows, list[DeadLetter], int]:
        """Rows of the events not in ``known_ids`` (first occurrence wins inside the batch). Sealed values are
        opened unless their key id is in ``erased`` or erased by a ``SubjectErased`` of this batch.

        Returns (rows, dead letters incl. projection failures, number of events applied).
        """
        rows = new_rows()
        dead = list(prepared.dead)
        seen = set(known_ids)
        applied = 0
        open_value = None
        if self.keys is not None:
            gone = set(erased) | erased_key_ids(prepared.events)
            open_value = opener(self.keys.get, gone.__contains__)
        for event_id, event_type, record, rec, writer in prepared.events:
            if event_id in seen:
                continue
            one = new_rows()
            try:
                if open_value is not None:
                    record = unseal(event_type, record, open_value, one)
                project(event_type, record, rec, writer, one)
                key_id = prepared.signed_by.get(event_id)
                one["log_events"]["verified"].append(key_id is not None)
                one["log_events"]["key_id"].append(key_id)
            except Exception as exc:  # a projection bug must not block the partition
                dead.append(DeadLetter(rec, "projection_failed", f"{type(exc).__name__}: {exc}"))
                continue
            seen.add(event_id)
            applied += 1
            for table, cols in one.items():
                rows[table].merge(cols)
        for dl in dead:
            dead_letter_row(dl, rows)
        return rows, dead, applied
