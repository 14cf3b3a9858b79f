"""The SDK through the API: ``POST /events`` publishes events the SDK built (``MODELOG_URL``), and
``GET /positions`` tells it how far the views have projected (``wait_projected``).

Each event is re-validated against its schema's rules, its envelope's actor is REPLACED by the
token's principal (a client cannot choose who it is), and it is published through the server's
shared emitter; the answer comes only after the broker acknowledged every event of the request.
Re-sending a request is harmless: event ids are kept, and the projector deduplicates by them.
Event types need the permission of the equivalent REST route; processor-only events are refused.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from modelog.server.auth import Principal, requires
from modelog.server.problems import Problem, forbidden
from modelog.wire.envelope import Event
from modelog.wire.errors import DeliveryError, ValidationError
from modelog.wire.models import event_models, validate

router = APIRouter(tags=["sdk"])

MAX_EVENTS = 1000  # per request
MAX_BYTES = 32 * 1024 * 1024
MAX_KEY = 1000

EVENT_PERMISSIONS = {
    **dict.fromkeys(("ExperimentCreated", "RunStarted", "RunEnded", "MetricsLogged", "ParamsLogged", "TagsSet",
                     "ArtifactLogged", "DatasetVersionLogged", "LineageRecorded", "ReferenceProfileLogged",
                     "PredictionsLogged", "LabelsLogged", "MonitorConfigured"), "write"),
    **dict.fromkeys(("ModelVersionRegistered", "ModelAnnotated", "ChangeRequested", "DeploymentRecorded"), "registry"),
    "ApprovalGiven": "approve",
    **dict.fromkeys(("AccessChanged", "PolicySet", "TokenIssued", "TokenRevoked", "SubjectErased"), "admin"),
}
# RequestDecided, DriftMeasured, AlertChanged: published by the processors only


def _parse(raw: bytes) -> list[dict[str, Any]]:
    if len(raw) > MAX_BYTES:
        raise Problem(413, "Request too large", f"body: at most {MAX_BYTES} bytes per request", "too-large",
                      field="body", rule=f"at most {MAX_BYTES} bytes", limit=MAX_BYTES)
    try:
        data = json.loads(raw)  # NaN and ±Infinity are accepted: metric values may be
    except ValueError:
        raise ValidationError("body", raw[:80].decode(errors="replace"), "must be JSON") from None
    events = data.get("events") if isinstance(data, dict) else None
    if not isinstance(events, list) or not events:
        raise ValidationError("events", events, "must be a non-empty list of {event_type, key, record}")
    if len(events) > MAX_EVENTS:
        raise Problem(413, "Too many events", f"events: at most {MAX_EVENTS} per request (got {len(events)})",
                      "too-large", field="events", rule=f"at most {MAX_EVENTS} per request", limit=MAX_EVENTS)
    return events


def _event(i: int, item: Any, principal: Principal) -> Event:
    where = f"events[{i}]"
    if not isinstance(item, dict):
        raise ValidationError(where, item, "must be an object {event_type, key, record}")
    event_type, key, record = item.get("event_type"), item.get("key"), item.get("record")
    if event_type not in event_models():
        raise ValidationError(f"{where}.event_type", event_type, "must be a modelog event type")
    needed = EVENT_PERMISSIONS.get(event_type)
    if needed is None:
        raise forbidden(f"{where}.event_type: {event_type} is published by modelog's processors only")
    if not principal.can(needed):
        raise forbidden(f"{where}: {principal.name} lacks the {needed!r} permission {event_type} needs")
    if not isinstance(key, str) or not key or len(key) > MAX_KEY:
        raise ValidationError(f"{where}.key", key, f"must be the entity key: text of 1 to {MAX_KEY} characters")
    if not isinstance(record, dict) or not isinstance(record.get("envelope"), dict):
        raise ValidationError(f"{where}.record", record, "must be the event's record with its envelope")
    envelope = record["envelope"]
    if envelope.get("event_type") != event_type:
        raise ValidationError(f"{where}.record.envelope.event_type", envelope.get("event_type"),
                              f"must be {event_type}")
    record = {**record, "envelope": {**envelope, "actor": {"principal": principal.name, "kind": "USER"}}}
    try:
        validate(event_type, record)
    except ValidationError as exc:
        raise ValidationError(f"{where}.{exc.field}", exc.value, exc.rule) from None
    return Event(event_type, key, record)


def _publish(request: Request, events: list[Event]) -> dict[str, Any]:
    emitter = request.app.state.publisher.emitter
    try:
        emitter.emit(events)
        emitter.flush()
    except DeliveryError as exc:
        raise Problem(503, "Not delivered", f"the broker did not acknowledge every event: {exc}", "not-delivered") \
            from None
    positions = dict(getattr(emitter, "positions", {}) or {})
    return {"accepted": len(events), "event_ids": [e.event_id for e in events],
            "positions": {f"{t}/{p}": o for (t, p), o in positions.items()}}


@router.post("/events", summary="Publish events the SDK built (MODELOG_URL); answers once the broker acknowledged")
async def post_events(request: Request, principal: Principal = requires("write")) -> dict[str, Any]:
    items = _parse(await request.body())
    events = [_event(i, item, principal) for i, item in enumerate(items)]
    return await run_in_threadpool(_publish, request, events)


@router.get("/positions", summary="How far the views have projected: next offset per topic/partition")
def positions(request: Request, principal: Principal = requires("read")) -> dict[str, Any]:
    from modelog.consumers.query import projected_positions

    pos = projected_positions(request.app.state.settings)
    return {"positions": {f"{t}/{p}": o for (t, p), o in pos.items()}}
