"""Wire format: Avro binary with the writer schema's identifier in front.

Single-object encoding (default, needs no server)::

    C3 01 | CRC-64-AVRO fingerprint, 8 bytes little-endian | Avro binary body

Confluent framing (when a schema registry URL is configured)::

    00 | schema id, 4 bytes big-endian | Avro binary body

Decoding accepts both, whatever the encoder uses, so a topic may mix them.
The reader resolves the writer schema against the current schema of the
same event type (Avro schema resolution), so old events decode with new code.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from modelog.wire.errors import DecodeError
from modelog.wire.schemas import EventSchema, _make, current_schemas, released_schemas

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"


@dataclass(frozen=True)
class Decoded:
    """A decoded event: its type, its record (reader-schema shape), and the writer schema's id."""

    event_type: str
    record: dict[str, Any]
    writer_id: str  # fingerprint hex, or "sr:<id>"


class Codec:
    """Encodes events of the current schemas and decodes any released version.

    ``registry_url`` switches encoding to Confluent framing; decoding handles both.
    """

    def __init__(self, registry_url: str | None = None, topic: str | None = None) -> None:
        self._current = current_schemas()
        self._writers = released_schemas()
        self._registry = _RegistryClient(registry_url) if registry_url else None
        self._topic = topic
        self._sr_ids: dict[str, int] = {}

    # -- encoding --------------------------------------------------------------
    def encode(self, event_type: str, record: dict[str, Any]) -> bytes:
        schema = self._current[event_type]
        buf = io.BytesIO()
        if self._registry is None:
            buf.write(SINGLE_OBJECT_MAGIC)
            buf.write(schema.fingerprint)
        else:
            buf.write(CONFLUENT_MAGIC)
            buf.write(struct.pack(">I", self._registry_id(schema)))
        schemaless_writer(buf, schema.parsed, record, strict_allow_default=True)
        return buf.getvalue()

    def _registry_id(self, schema: EventSchema) -> int:
        sid = self._sr_ids.get(schema.event_type)
        if sid is None:
            assert self._registry is not None
            subject = f"{self._topic}-{schema.fullname}" if self._topic else schema.fullname
            sid = self._registry.register(subject, schema.expanded)
            self._sr_ids[schema.event_type] = sid
        return sid

    # -- decoding --------------------------------------------------------------
    def decode(self, data: bytes | None) -> Decoded:
        """Decode one record value. Raises DecodeError with a reason code on any failure."""
        if not data:
            raise DecodeError("empty", "record has no value")
        if data[:2] == SINGLE_OBJECT_MAGIC and len(data) >= 10:
            fp = bytes(data[2:10])
            writer = self._writers.get(fp)
            if writer is None:
                raise DecodeError("unknown_schema", f"no schema with fingerprint {fp.hex()}")
            writer_id, body = fp.hex(), data[10:]
        elif data[:1] == CONFLUENT_MAGIC and len(data) >= 5:
            sid = struct.unpack(">I", data[1:5])[0]
            writer = self._writer_from_registry(sid)
            writer_id, body = f"sr:{sid}", data[5:]
        else:
            raise DecodeError("not_modelog_event", f"unknown framing (first bytes {bytes(data[:4]).hex()})")
        reader = self._current.get(writer.event_type)
        if reader is None:
            raise DecodeError("unknown_event_type", f"this version has no reader for {writer.event_type}")
        try:
            bio = io.BytesIO(body)
            record = schemaless_reader(bio, writer.parsed, reader.parsed)
            if bio.tell() != len(body):
                raise ValueError(f"{len(body) - bio.tell()} trailing bytes")
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise DecodeError("malformed_body", f"{writer.event_type}: {type(exc).__name__}: {exc}") from exc
        if writer.event_type == "PredictionsLogged":
            _requests_as_lists(record)
        return Decoded(writer.event_type, record, writer_id)

    def event_type(self, data: bytes | None) -> str | None:
        """The event type a record's single-object framing names (its writer schema's fingerprint), without
        decoding the body; None when the framing does not say it here (Confluent framing, unknown or broken
        framing: :meth:`decode` gives the reason). A consumer that wants a few types skips the others with it."""
        if data and data[:2] == SINGLE_OBJECT_MAGIC and len(data) >= 10:
            writer = self._writers.get(bytes(data[2:10]))
            return None if writer is None else writer.event_type
        return None

    def _writer_from_registry(self, sid: int) -> EventSchema:
        if self._registry is None:
            raise DecodeError("unknown_schema", f"Confluent-framed record (schema id {sid}) but no MODELOG_SCHEMA_REGISTRY_URL")
        try:
            expanded = self._registry.fetch(sid)
        except Exception as exc:
            raise DecodeError("unknown_schema", f"schema id {sid}: {exc}") from exc
        return _make(expanded)


def _requests_as_lists(record: dict[str, Any]) -> None:
    """A batch's request ids and timestamps in their first form, whichever form they were written in
    (decision 0030): readers never see the compact one."""
    if record.get("request_id_counters") is None and record.get("timestamp_values") is None:
        return
    from modelog.wire import prediction_columns

    try:
        prediction_columns.expand(record)
    except prediction_columns.ColumnsError as exc:
        raise DecodeError("malformed_body", f"PredictionsLogged.{exc.field}: {exc}") from None


class _RegistryClient:
    """The two calls of the Confluent Schema Registry REST API modelog needs (stdlib HTTP)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._cache: dict[int, dict] = {}
        self._lock = threading.Lock()

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                raise RuntimeError(f"schema registry {method} {path}: HTTP {exc.code} {exc.read()[:200]!r}") from None

    def register(self, subject: str, schema: dict) -> int:
        return int(self._call("POST", f"/subjects/{subject}/versions", {"schema": json.dumps(schema)})["id"])

    def fetch(self, sid: int) -> dict:
        with self._lock:
            if sid in self._cache:
                return self._cache[sid]
        expanded = json.loads(self._call("GET", f"/schemas/ids/{sid}")["schema"])
        parse_schema(expanded)  # reject garbage early
        with self._lock:
            self._cache[sid] = expanded
        return expanded
