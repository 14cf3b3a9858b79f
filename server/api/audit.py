"""Audit: who did what, when (the ``audit_log`` view, newest first, keyset-paged), and any one event
exactly as it is on the log (fetched from the broker at its topic/partition/offset and decoded)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request

from modelog.server.api.common import query_time
from modelog.server.auth import Principal, requires
from modelog.server.log import RecordReader, jsonable
from modelog.server.problems import Problem, not_found
from modelog.wire.errors import BrokerError, ConfigError, DecodeError, ValidationError
from modelog.server.views import views_for

router = APIRouter(tags=["audit"])

MAX_LIMIT = 1000
COLUMNS = ("occurred_at, event_type, actor, actor_kind, entity_type, entity_key, event_id, topic, \"partition\", "
           "\"offset\", logged_at, source_host, source_pid, source_program, sdk_version, writer_schema")


def page_token(row: dict[str, Any]) -> str:
    """The token of the page after ``row``: its (occurred_at, event_id), base64url JSON."""
    at = row["occurred_at"]
    text = json.dumps([at.isoformat() if isinstance(at, datetime) else str(at), row["event_id"]])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _parse_token(token: str) -> tuple[str, str]:
    try:
        at, event_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        datetime.fromisoformat(at)
        if not isinstance(event_id, str):
            raise ValueError
        return at, event_id
    except (ValueError, TypeError, binascii.Error):
        raise ValidationError("page_token", token, "must be a next_page_token this endpoint returned") from None


@router.get("/audit", summary="The audit log (newest first), filtered by entity, actor and time, keyset-paged")
def audit(request: Request, entity: str | None = Query(None, description="an entity key (run id, model:<name> ...) "
                                                                        "or <entity_type>:<entity_key>"),
          actor: str | None = None, event_type: str | None = None,
          start: str | None = Query(None, alias="from", description="occurred at or after (ISO 8601)"),
          end: str | None = Query(None, alias="to", description="occurred before (ISO 8601)"),
          limit: int = Query(100, ge=1, le=MAX_LIMIT), page_token_: str | None = Query(None, alias="page_token"),
          principal: Principal = requires("read")) -> dict[str, Any]:
    where, params = [], []
    if entity is not None:
        where.append("(entity_key = ? OR entity_type || ':' || entity_key = ?)")
        params += [entity, entity]
    if actor is not None:
        where.append("actor = ?")
        params.append(actor)
    if event_type is not None:
        where.append("event_type = ?")
        params.append(event_type)
    if (t := query_time("from", start)) is not None:
        where.append("occurred_at >= CAST(? AS TIMESTAMP)")
        params.append(t)
    if (t := query_time("to", end)) is not None:
        where.append("occurred_at < CAST(? AS TIMESTAMP)")
        params.append(t)
    if page_token_ is not None:
        at, event_id = _parse_token(page_token_)
        where.append("(occurred_at < CAST(? AS TIMESTAMP) OR (occurred_at = CAST(? AS TIMESTAMP) AND event_id < ?))")
        params += [at, at, event_id]
    sql = (f"SELECT {COLUMNS} FROM audit_log" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY occurred_at DESC, event_id DESC LIMIT ?")
    rows = views_for(request).rows(sql, [*params, limit])
    return {"events": rows, "next_page_token": page_token(rows[-1]) if len(rows) == limit else None}


def record_reader(request: Request):
    app = request.app
    reader = getattr(app.state, "record_reader", None)
    if reader is None:
        reader = app.state.record_reader = RecordReader(app.state.settings)
    return reader


@router.get("/events/{event_id}", summary="One event as it is on the log: decoded, with topic, partition, offset")
def event(request: Request, event_id: str, principal: Principal = requires("read")) -> dict[str, Any]:
    from modelog.wire.codec import Codec

    row = views_for(request).one(f"SELECT {COLUMNS} FROM audit_log WHERE event_id = ?", [event_id])
    if row is None:
        raise not_found(f"event_id: no event {event_id!r} in the audit log")
    topic, partition, offset = row["topic"], row["partition"], row["offset"]
    try:
        rec = record_reader(request).read(topic, partition, offset)
    except (BrokerError, ConfigError) as exc:
        raise Problem(503, "Log unavailable", f"cannot read {topic}/{partition}@{offset}: {exc}", "log-unavailable") \
            from None
    if rec is None:
        raise Problem(503, "Log unavailable", f"the broker did not return {topic}/{partition}@{offset} in time",
                      "log-unavailable")
    try:
        decoded = Codec(request.app.state.settings.schema_registry_url).decode(rec.value)
    except DecodeError as exc:
        raise Problem(502, "Undecodable record", f"{topic}/{partition}@{offset}: {exc}", "undecodable") from None
    if decoded.record.get("envelope", {}).get("event_id") != event_id:
        raise Problem(502, "Log mismatch", f"{topic}/{partition}@{offset} holds another event", "log-mismatch")
    return {"event_id": event_id, "event_type": decoded.event_type, "topic": rec.topic, "partition": rec.partition,
            "offset": rec.offset, "timestamp_ms": rec.timestamp_ms,
            "key": rec.key.decode(errors="replace") if rec.key is not None else None,
            "headers": {k: (v.decode(errors="replace") if v is not None else None) for k, v in rec.headers},
            "writer_schema": decoded.writer_id, "record": jsonable(decoded.record)}
