"""The event schemas: loading ``.avsc`` files, fingerprints, and every released version.

``schemas/modelog.events.<Type>.avsc`` are the current (reader) schemas;
``schemas/released/<Type>.<fingerprint>.avsc`` hold every released writer schema,
fully expanded, so any record ever written can still be decoded.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import load_schema, to_parsing_canonical_form

from modelog.schemas import RELEASED_DIR, SCHEMA_DIR

EVENT_NAMESPACE = "modelog.events"

_EMPTY64 = 0xC15D213AA4D7A795


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY64 if fp & 1 else 0)
        table.append(fp)
    return table


_FP_TABLE = _table()


def crc64_avro(data: bytes) -> int:
    """The Avro spec's 64-bit Rabin fingerprint (CRC-64-AVRO)."""
    fp = _EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ _FP_TABLE[(fp ^ byte) & 0xFF]
    return fp


def fingerprint(schema: Any) -> bytes:
    """8-byte little-endian CRC-64-AVRO of the schema's Parsing Canonical Form (single-object encoding)."""
    return crc64_avro(to_parsing_canonical_form(schema).encode()).to_bytes(8, "little")


def _strip_logical_types(schema: Any) -> Any:
    """Copy of ``schema`` without logicalType, so timestamps decode as plain int micros."""
    if isinstance(schema, dict):
        return {k: _strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip_logical_types(s) for s in schema]
    return schema


@dataclass(frozen=True)
class EventSchema:
    """One version of one event's schema."""

    event_type: str  # short name, e.g. "RunStarted"
    expanded: dict  # the full JSON schema, references inlined
    fingerprint: bytes
    parsed: Any  # fastavro-parsed, logical types stripped (ints in, ints out)

    @property
    def fullname(self) -> str:
        return f"{EVENT_NAMESPACE}.{self.event_type}"


def _expand(path: Path) -> dict:
    loaded = load_schema(str(path), _write_hint=False)
    # load_schema returns the schema with named references injected
    return json.loads(json.dumps(loaded))


def _make(expanded: dict) -> EventSchema:
    name = expanded["name"].rsplit(".", 1)[-1]
    return EventSchema(
        event_type=name,
        expanded=expanded,
        fingerprint=fingerprint(parse_schema(copy.deepcopy(expanded))),
        parsed=parse_schema(_strip_logical_types(expanded)),
    )


@cache
def current_schemas() -> dict[str, EventSchema]:
    """Current schema of every event type, by short name."""
    out = {}
    for path in sorted(SCHEMA_DIR.glob(f"{EVENT_NAMESPACE}.*.avsc")):
        schema = _make(_expand(path))
        out[schema.event_type] = schema
    return out


@cache
def released_schemas() -> dict[bytes, EventSchema]:
    """Every released schema version (plus the current ones), by fingerprint."""
    out = {s.fingerprint: s for s in current_schemas().values()}
    if RELEASED_DIR.is_dir():
        for path in sorted(RELEASED_DIR.glob("*.avsc")):
            schema = _make(json.loads(path.read_text()))
            out[schema.fingerprint] = schema
    return out


def released_file(schema: EventSchema) -> Path:
    return RELEASED_DIR / f"{schema.event_type}.{schema.fingerprint.hex()}.avsc"


def freeze_current() -> list[Path]:
    """Write every current schema not yet released into ``released/``. Returns the new files."""
    RELEASED_DIR.mkdir(exist_ok=True)
    written = []
    for schema in current_schemas().values():
        path = released_file(schema)
        if not path.exists():
            path.write_text(json.dumps(schema.expanded, indent=2) + "\n")
            written.append(path)
    return written
