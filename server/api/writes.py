"""Tracking writes: start a run, log a batch (metrics, params, tags), end it, upload an artifact's bytes. Each
is an event on the log, validated like the SDK's before anything is published, stamped with the caller's
principal."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from modelog.server.auth import Principal, requires
from modelog.server.problems import Problem, not_found
from modelog.server.uploads import received, store_and_log
from modelog.wire import rules as _rules
from modelog.wire.envelope import now_micros
from modelog.wire.errors import ValidationError
from modelog.wire.ids import new_run_id
from modelog.wire.models import tag_texts, validate
from modelog.server.views import views_for

router = APIRouter(tags=["tracking writes"])

MAX_POINTS = 100_000  # per request
STATUSES = ("FINISHED", "FAILED", "KILLED")
_EMPTY_ENV = {"python_version": "", "python_implementation": "", "platform": "", "hostname": "", "cpu_count": 0,
              "working_dir": ""}


class RunStart(BaseModel):
    experiment: str = "default"
    name: str | None = None
    run_id: str | None = None
    tags: dict[str, Any] = Field(default_factory=dict)
    start_time: int | None = Field(None, description="microseconds since the epoch (default: now)")


class Point(BaseModel):
    key: str
    value: float | int | str = Field(description="a number; 'NaN', 'Infinity', '-Infinity' allowed")
    step: int = 0
    timestamp: int | None = Field(None, description="microseconds since the epoch (default: now)")


class LogBatch(BaseModel):
    metrics: list[Point] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, Any] = Field(default_factory=dict)


class RunEnd(BaseModel):
    status: str = "FINISHED"
    error: str | None = None


def _check(field: str, value: Any, rule) -> Any:
    try:
        return rule(value)
    except ValueError as exc:
        raise ValidationError(field, value, str(exc)) from None


def _run_exists(request: Request, run_id: str) -> dict | None:
    return views_for(request).one("SELECT run_id, status FROM runs WHERE run_id = ?", [run_id])


@router.post("/runs", status_code=201, summary="Start a run")
def start_run(request: Request, body: RunStart, principal: Principal = requires("write")) -> dict[str, Any]:
    client = request.app.state.publisher.client(principal.name)
    _check("experiment", body.experiment, _rules.name)
    rid = body.run_id or new_run_id()
    _check("run_id", rid, _rules.ident)
    name = body.name if body.name is not None else f"run-{rid[-8:]}"
    _check("name", name, _rules.name)
    started = client.events.make("RunStarted", "run", rid, run_id=rid, experiment=body.experiment, name=name,
                                 start_time=body.start_time or now_micros(), tags=tag_texts(body.tags),
                                 environment=_EMPTY_ENV)
    validate("RunStarted", started.record)
    client.create_experiment(body.experiment)
    client.emitter.emit([started])
    client.flush()
    return {"run_id": rid, "experiment": body.experiment, "name": name}


@router.post("/runs/{run_id}/log", summary="Log a batch of metrics, params and tags to a run")
def log_batch(request: Request, run_id: str, body: LogBatch, principal: Principal = requires("write")) -> dict:
    client = request.app.state.publisher.client(principal.name)
    _check("run_id", run_id, _rules.ident)
    if len(body.metrics) > MAX_POINTS:
        raise ValidationError("metrics", len(body.metrics), f"at most {MAX_POINTS} points per request")
    now = now_micros()
    points = []
    for i, p in enumerate(body.metrics):
        _check(f"metrics[{i}].key", p.key, _rules.name)
        value = p.value
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValidationError(f"metrics[{i}].value", p.value, "must be a number") from None
        value = _check(f"metrics[{i}].value", value, _rules.metric_value)
        step = _check(f"metrics[{i}].step", p.step, _rules.step)
        points.append({"key": p.key, "value": value, "step": step, "timestamp": p.timestamp or now})
    params = []
    for k, v in body.params.items():
        _check("param name", k, _rules.name)
        try:
            text, typ = _rules.param_text(v)
            _rules.param_value(text)
        except ValueError as exc:
            raise ValidationError(f"params[{k!r}]", v, str(exc)) from None
        params.append({"key": k, "value": text, "value_type": typ})
    tags = tag_texts(body.tags) if body.tags else {}
    if _run_exists(request, run_id) is None:
        raise not_found(f"run_id: no run {run_id!r} (start it with POST /api/v1/runs)")
    if params:  # params are immutable per run: a different value for a logged key is refused
        logged = {r["key"]: r["value"] for r in views_for(request).rows(
            "SELECT key, value FROM params WHERE run_id = ?", [run_id])}
        for p in params:
            if p["key"] in logged and logged[p["key"]] != p["value"]:
                raise ValidationError(f"params[{p['key']!r}]", p["value"],
                                      f"already logged for this run as {logged[p['key']]!r}; params are immutable")
    events = []
    for i in range(0, len(points), 5000):
        events.append(client.events.make("MetricsLogged", "run", run_id, run_id=run_id, points=points[i:i + 5000]))
    if params:
        events.append(client.events.make("ParamsLogged", "run", run_id, run_id=run_id, params=params))
    if tags:
        events.append(client.events.make("TagsSet", "run", run_id, run_id=run_id, tags=tags))
    for e in events:
        validate(e.event_type, e.record)
    if events:
        client.emitter.emit(events)
        client.flush()
    return {"run_id": run_id, "metrics": len(points), "params": len(params), "tags": len(tags)}


@router.post("/runs/{run_id}/end", summary="End a run (FINISHED, FAILED or KILLED)")
def end_run(request: Request, run_id: str, body: RunEnd, principal: Principal = requires("write")) -> dict:
    client = request.app.state.publisher.client(principal.name)
    if body.status not in STATUSES:
        raise ValidationError("status", body.status, f"must be one of {', '.join(STATUSES)}")
    row = _run_exists(request, run_id)
    if row is None:
        raise not_found(f"run_id: no run {run_id!r}")
    if row["status"] != "RUNNING":
        raise Problem(409, "Conflict", f"run {run_id} has already ended ({row['status']})", "conflict")
    client.publish("RunEnded", "run", run_id, run_id=run_id, status=body.status, end_time=now_micros(),
                   error=body.error[:8000] if body.error else None)
    client.flush()
    return {"run_id": run_id, "status": body.status}


# -- artifact bytes ----------------------------------------------------------------------------------------

def digest_of(header: str | None) -> str:
    """The sha256 (hex) of a ``Repr-Digest: sha-256=:<base64>:`` header (RFC 9530); ValidationError if absent
    or malformed."""
    rule = "must be 'sha-256=:<base64 of the 32-byte sha256>:' (RFC 9530), the sha256 of the body"
    for item in (header or "").split(","):
        algo, _, value = item.strip().partition("=")
        if algo.strip().lower() == "sha-256" and value.startswith(":") and value.endswith(":"):
            try:
                raw = base64.b64decode(value[1:-1], validate=True)
            except (binascii.Error, ValueError):
                break
            if len(raw) == 32:
                return raw.hex()
            break
    raise ValidationError("Repr-Digest", header, rule)


@router.put("/runs/{run_id}/artifacts/{path:path}", status_code=201,
            summary="Upload an artifact's bytes (streamed, checked against Repr-Digest) and log it to the run")
async def upload_artifact(request: Request, run_id: str, path: str,
                          uri: str | None = Query(None, max_length=2000, description="where the file was logged "
                                                  "from (default: the API path)"),
                          principal: Principal = requires("write")) -> dict[str, Any]:
    """The request body is the file. It is streamed to a temporary file while hashed (never held in memory),
    compared with the ``Repr-Digest`` header (``sha-256=:<base64>:``), stored content-addressed in the
    server's artifact store (each content once) and then logged as ``ArtifactLogged`` with its content
    address (actor: the token's principal). 422 for a path that could escape the run (``..``, ``%2e%2e``,
    absolute, ``file:``), a missing or malformed digest, or bytes that are not the announced sha256
    (nothing is stored or logged then). The SDK uses it for ``run.log_artifact`` under ``MODELOG_URL``."""
    _check("run_id", run_id, _rules.ident)
    _check("path", path, _rules.stored_artifact_path)
    expected = digest_of(request.headers.get("repr-digest"))
    async with received(request, path) as body:
        if body.sha256 != expected:
            raise ValidationError("body", f"{body.size} bytes with sha256 {body.sha256}",
                                  f"must be the bytes of Repr-Digest's sha256 {expected}: the upload was "
                                  "changed or cut on the way; nothing was stored")
        publisher = request.app.state.publisher
        address = await run_in_threadpool(lambda: store_and_log(publisher.client(principal.name), run_id, path,
                                                                uri or f"{request.url.path}", body))
    return {"run_id": run_id, "path": path, "sha256": body.sha256, "size_bytes": body.size,
            "media_type": body.media_type, "content_address": address}


@router.get("/artifact-store", summary="Where this server stores artifact bytes (the root of content addresses)")
def artifact_store(request: Request, principal: Principal = requires("read")) -> dict[str, Any]:
    """``root``: a stored artifact's content address is ``<root>/sha256/<hex>``. 400 when the server has no
    artifact store (set MODELOG_ARTIFACT_URI where it runs)."""
    from modelog.wire.artifact_store import ArtifactStore

    return {"root": ArtifactStore.from_settings(request.app.state.settings).root}
