"""Registry: models and versions (reads), registering versions and requesting promotions (``registry``),
pending requests (``read``) and verdicts on them (``approve``).

Writes go through the SDK's :class:`modelog.sdk.registry.Registry` verbs on the caller's client, so
they are validated exactly like the SDK's and stamped with the token's principal. The processor
still decides every request (requester ≠ approver, metric gates, invariants); the API only reports
the outcome it sees in the views within a short wait.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from modelog.server.auth import Principal, requires
from modelog.server.encoding import ApiJSON
from modelog.server.problems import Problem, not_found
from modelog.wire import rules as _rules
from modelog.wire.errors import QueryError, ValidationError
from modelog.server.views import views_for

router = APIRouter(tags=["registry"])

DECISION_WAIT = 5.0  # seconds a verdict waits for the processor to decide before answering PENDING
REGISTER_WAIT = 30.0
MAX_PROMOTE_WAIT = 60.0
STATUSES = ("PENDING", "APPROVED", "REJECTED")


def _views(request: Request):
    return views_for(request)  # scoped to the caller (decision 0022)


def _client(request: Request, principal: Principal):
    return request.app.state.publisher.client(principal.name)


def _name(field: str, value: str) -> str:
    try:
        return _rules.name(value)
    except ValueError as exc:
        raise ValidationError(field, value, str(exc)) from None


def _model_known(views, name: str) -> bool:
    return views.one("SELECT 1 AS x FROM registered_versions WHERE model = ? LIMIT 1", [name]) is not None


# -- reads ----------------------------------------------------------------------------


@router.get("/models", summary="Models with their latest version, versions per stage and aliases")
def models(request: Request, principal: Principal = requires("read")) -> dict[str, Any]:
    views = _views(request)
    rows = views.rows("SELECT model, latest_version, version_count, production_version, aliases, description, "
                      "created_at, created_by, updated_at FROM models ORDER BY model")
    stages: dict[str, dict[str, list[int]]] = {}
    for v in views.rows("SELECT model, version, stage FROM model_versions ORDER BY model, version"):
        stages.setdefault(v["model"], {}).setdefault(v["stage"], []).append(v["version"])
    for r in rows:
        r["stages"] = stages.get(r["model"], {})
    return {"models": rows}


@router.get("/models/{name}", summary="One model: versions (stage, aliases, run metrics), stage history, "
                                      "deployments, pending requests")
def model(request: Request, name: str, principal: Principal = requires("read")) -> dict[str, Any]:
    views = _views(request)
    _name("name", name)
    row = views.one("SELECT * FROM models WHERE model = ?", [name])
    if row is None:
        if not _model_known(views, name):
            raise not_found(f"name: no model {name!r}")
        row = {"model": name, "latest_version": None, "version_count": 0, "deleted": True}
    versions = views.rows("SELECT version, stage, aliases, semver, run_id, artifact, uri, description, registered_at, "
                          "registered_by, stage_since FROM model_versions WHERE model = ? ORDER BY version", [name])
    run_ids = sorted({v["run_id"] for v in versions if v["run_id"]})
    metrics: dict[str, dict[str, Any]] = {}
    runs: dict[str, dict[str, Any]] = {}
    if run_ids:
        for m in views.rows("SELECT run_id, key, value FROM latest_metrics WHERE list_contains(?, run_id)",
                            [run_ids]):
            metrics.setdefault(m["run_id"], {})[m["key"]] = m["value"]
        for r in views.rows("SELECT run_id, experiment, name, status FROM runs WHERE list_contains(?, run_id)",
                            [run_ids]):
            runs[r["run_id"]] = r
    for v in versions:
        rid = v["run_id"]
        v["run"] = ({**runs.get(rid, {"run_id": rid}), "metrics": metrics.get(rid, {})} if rid else None)
    row["versions"] = versions
    row["stage_history"] = views.rows(
        "SELECT version, stage, valid_from, valid_to, request_id FROM stage_history WHERE model = ? "
        "ORDER BY log_offset, seq", [name])
    row["alias_history"] = views.rows(
        "SELECT alias, version, valid_from, valid_to, request_id FROM alias_history WHERE model = ? "
        "ORDER BY valid_from", [name])
    row["deployments"] = views.rows(
        "SELECT version, environment, endpoint, deployed_at, deployed_by, rollback_of, comment, replaced_at, "
        "replaced_at IS NULL AS current, event_id FROM deployments WHERE model = ? "
        "ORDER BY environment, deployed_at, event_id", [name])
    row["pending_requests"] = views.rows(
        "SELECT request_id, action, version, stage, alias, comment, requested_at, requested_by FROM requests "
        "WHERE model = ? AND status = 'PENDING' ORDER BY requested_at", [name])
    return row


# -- writes ---------------------------------------------------------------------------


class RegisterVersion(BaseModel):
    run_id: str | None = None
    artifact: str | None = Field(None, description="the artifact's path in the run (e.g. model.pkl)")
    uri: str | None = None
    semver: str | None = None
    description: str | None = None
    tags: dict[str, Any] = Field(default_factory=dict)
    wait: bool = Field(True, description="wait for the processor to number the version (else 202, version null)")


@router.post("/models/{name}/versions", status_code=201, summary="Register a new version of a model")
def register_version(request: Request, name: str, body: RegisterVersion,
                     principal: Principal = requires("registry")):
    _name("name", name)
    if body.run_id is not None:
        try:
            _rules.ident(body.run_id)
        except ValueError as exc:
            raise ValidationError("run_id", body.run_id, str(exc)) from None
        if _views(request).one("SELECT 1 AS x FROM runs WHERE run_id = ?", [body.run_id]) is None:
            raise not_found(f"run_id: no run {body.run_id!r}")
    registry = _client(request, principal).registry
    try:
        mv = registry.register_model(name, run_id=body.run_id, artifact=body.artifact, uri=body.uri,
                                     semver=body.semver, description=body.description, tags=body.tags,
                                     wait=body.wait, timeout=REGISTER_WAIT)
    except QueryError as exc:  # published, but the views did not number it in time
        raise Problem(504, "Not projected in time", str(exc), "not-projected") from None
    out = {"model": name, "version": mv.version, "event_id": mv.event_id, "run_id": mv.run_id, "semver": mv.semver}
    return ApiJSON(out, status_code=201 if mv.version is not None else 202)


class Promote(BaseModel):
    to: str = Field(description="development, staging or production")
    comment: str | None = None
    wait: bool = Field(False, description="wait (up to `timeout` s) for the decision")
    timeout: float = Field(30.0, gt=0, le=MAX_PROMOTE_WAIT)


def _status(st) -> dict[str, Any]:
    return {"request_id": st.request_id, "model": st.model, "action": st.action, "status": st.status,
            "reason": st.reason}


@router.post("/models/{name}/versions/{version}/promote", summary="Request a promotion (decided by the processor)")
def promote(request: Request, name: str, version: int, body: Promote, principal: Principal = requires("registry")):
    views = _views(request)
    _name("name", name)
    if body.to not in _rules.PROMOTABLE_STAGES:
        raise ValidationError("to", body.to, f"must be one of {', '.join(_rules.PROMOTABLE_STAGES)}")
    if version < 1:
        raise ValidationError("version", version, "must be a version number: an integer >= 1")
    if not _model_known(views, name):
        raise not_found(f"name: no model {name!r}")
    if views.one("SELECT 1 AS x FROM model_versions WHERE model = ? AND version = ?", [name, version]) is None:
        raise not_found(f"version: {name!r} has no live version {version}")
    st = _client(request, principal).registry.promote(name, version, to=body.to, comment=body.comment,
                                                        wait=body.wait, timeout=body.timeout)
    return ApiJSON(_status(st), status_code=202 if st.status == "PENDING" else 200)


@router.get("/requests", summary="Change requests, newest first (filter by status and model)")
def requests_(request: Request, status: str | None = Query(None, description="pending, approved or rejected"),
              model: str | None = None, limit: int = Query(200, ge=1, le=1000),
              principal: Principal = requires("read")) -> dict[str, Any]:
    where, params = [], []
    if status is not None:
        if status.upper() not in STATUSES:
            raise ValidationError("status", status, "must be one of pending, approved, rejected")
        where.append("status = ?")
        params.append(status.upper())
    if model is not None:
        where.append("model = ?")
        params.append(model)
    sql = ("SELECT request_id, model, action, version, stage, alias, comment, requested_at, requested_by, status, "
           "reason, decided_at FROM requests" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY requested_at DESC, request_id DESC LIMIT ?")
    return {"requests": _views(request).rows(sql, [*params, limit])}


class Verdict(BaseModel):
    comment: str | None = Field(None, max_length=8000)


def _verdict(request: Request, request_id: str, body: Verdict, principal: Principal, verdict: str) -> JSONResponse:
    views = _views(request)
    row = views.one("SELECT request_id, model, action, status FROM requests WHERE request_id = ?", [request_id])
    if row is None:
        raise not_found(f"request_id: no request {request_id!r}")
    if row["status"] != "PENDING":
        raise Problem(409, "Conflict", f"request {request_id} is already {row['status']}", "conflict",
                      status_now=row["status"])
    client = _client(request, principal)
    client.registry.approve(row["model"], request_id, body.comment, verdict=verdict)
    try:  # the processor decides when it projects the verdict: wait for that, briefly
        client.wait_projected(DECISION_WAIT)
    except QueryError:
        pass
    now = views.one("SELECT request_id, model, action, status, reason FROM requests WHERE request_id = ?",
                    [request_id]) or {**row, "reason": None}
    return ApiJSON({**now, "verdict": verdict}, status_code=202 if now["status"] == "PENDING" else 200)


@router.post("/requests/{request_id}/approve", summary="Approve a pending request (the processor decides)")
def approve(request: Request, request_id: str, body: Verdict | None = None,
            principal: Principal = requires("approve")):
    return _verdict(request, request_id, body or Verdict(), principal, "APPROVE")


@router.post("/requests/{request_id}/reject", summary="Reject a pending request (the processor decides)")
def reject(request: Request, request_id: str, body: Verdict | None = None,
           principal: Principal = requires("approve")):
    return _verdict(request, request_id, body or Verdict(), principal, "REJECT")
