"""Monitoring: drift per window and column, performance per window, alerts (reads); and
``POST /predictions``, the batched prediction log for serving stacks in other languages.

Predictions are validated and turned into ``PredictionsLogged`` batch events exactly as
:class:`modelog.Monitor` does (the same payload helper, the same rules), one event per
``BATCH_ROWS`` rows, keyed ``monitor:<model>``; nothing is published if any row is invalid.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from modelog.sdk.monitoring import BATCH_ROWS, predictions_payload
from modelog.server.api.common import query_time
from modelog.server.auth import Principal, requires
from modelog.server.problems import Problem, not_found
from modelog.wire import rules as _rules
from modelog.wire.envelope import now_micros
from modelog.wire.errors import ValidationError
from modelog.wire.ids import uuid7
from modelog.wire.models import validate
from modelog.server.views import views_for

router = APIRouter(tags=["monitoring"])

MAX_ROWS = 10_000  # predictions per request
MAX_WINDOWS = 1000


def _views(request: Request):
    return views_for(request)  # scoped to the caller (decision 0022)


def _name(field: str, value: Any) -> str:
    try:
        return _rules.name(value)
    except ValueError as exc:
        raise ValidationError(field, value, str(exc)) from None


def _known_model(views, model: str) -> bool:
    for view in ("models", "reference_profiles", "monitor_configs", "drift_windows", "prediction_rates"):
        if views.one(f"SELECT 1 AS x FROM {view} WHERE model = ? LIMIT 1", [model]) is not None:
            return True
    return False


def _filters(model: str, deployment: str | None, start: str | None, end: str | None,
             time_col: str = "window_start", end_col: str = "window_end") -> tuple[str, list]:
    where, params = ["model = ?"], [model]
    if deployment is not None:
        where.append("deployment = ?")
        params.append(deployment)
    if start is not None:
        where.append(f"{end_col} >= CAST(? AS TIMESTAMP)")
        params.append(start)
    if end is not None:
        where.append(f"{time_col} <= CAST(? AS TIMESTAMP)")
        params.append(end)
    return " AND ".join(where), params


@router.get("/monitoring/{model}/drift", summary="Drift per window (drift_windows) with each column's statistics "
                                                 "(drift_metrics)")
def drift(request: Request, model: str, deployment: str | None = None,
          start: str | None = Query(None, alias="from", description="windows ending at or after (ISO 8601)"),
          end: str | None = Query(None, alias="to", description="windows starting at or before (ISO 8601)"),
          limit: int = Query(200, ge=1, le=MAX_WINDOWS), principal: Principal = requires("read")) -> dict[str, Any]:
    views = _views(request)
    _name("model", model)
    where, params = _filters(model, deployment, query_time("from", start), query_time("to", end))
    if not _known_model(views, model):
        raise not_found(f"model: no monitoring data or registered versions for {model!r}")
    windows = views.rows('SELECT deployment, version, "window", window_start, window_end, rows, dropped, drift_share, '
                         f'dataset_drift, measured_at FROM drift_windows WHERE {where} '
                         'ORDER BY window_start DESC, deployment, "window" DESC LIMIT ?', [*params, limit])
    by_key: dict[tuple, dict[str, Any]] = {}
    for w in windows:
        w["columns"] = []
        by_key[(w["deployment"], w["window"])] = w
    if windows:
        oldest = min(w["window_start"] for w in windows)
        cols = views.rows('SELECT deployment, "window", "column", kind, role, method, score, threshold, drift, n_ref, '
                          'n_cur, missing_ref, missing_cur, ks_stat, ks_p, psi, js, wasserstein_norm, chi2_p, unseen '
                          f'FROM drift_metrics WHERE {where} AND window_start >= ? ORDER BY "column"',
                          [*params, oldest])
        for c in cols:
            w = by_key.get((c.pop("deployment"), c.pop("window")))
            if w is not None:
                w["columns"].append(c)
    return {"model": model, "windows": windows}


@router.get("/monitoring/{model}/performance", summary="Performance per window once labels arrive")
def performance(request: Request, model: str, deployment: str | None = None,
                limit: int = Query(200, ge=1, le=MAX_WINDOWS),
                principal: Principal = requires("read")) -> dict[str, Any]:
    views = _views(request)
    _name("model", model)
    if not _known_model(views, model):
        raise not_found(f"model: no monitoring data or registered versions for {model!r}")
    where, params = ["p.model = ?"], [model]
    if deployment is not None:
        where.append("p.deployment = ?")
        params.append(deployment)
    rows = views.rows("SELECT p.*, w.window_start, w.window_end FROM performance p LEFT JOIN drift_windows w "
                      'ON w.model = p.model AND w.deployment = p.deployment AND w."window" = p."window" '
                      f'WHERE {" AND ".join(where)} ORDER BY w.window_start DESC NULLS LAST, p."window" DESC LIMIT ?',
                      [*params, limit])
    return {"model": model, "windows": rows}


@router.get("/alerts", summary="Alert incidents (open or resolved), newest first")
def alerts(request: Request, status: str | None = Query(None, description="open or resolved"),
           model: str | None = None, deployment: str | None = None, limit: int = Query(200, ge=1, le=1000),
           principal: Principal = requires("read")) -> dict[str, Any]:
    where, params = [], []
    if status is not None:
        if status.upper() not in ("OPEN", "RESOLVED"):
            raise ValidationError("status", status, "must be open or resolved")
        where.append("status = ?")
        params.append(status.upper())
    for col, value in (("model", model), ("deployment", deployment)):
        if value is not None:
            where.append(f"{col} = ?")
            params.append(value)
    sql = ("SELECT alert_id, model, deployment, rule, status, raised_at, resolved_at, value, threshold, message "
           "FROM alert_incidents" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY raised_at DESC NULLS LAST, alert_id LIMIT ?")
    incidents = _views(request).rows(sql, [*params, limit])
    if incidents:  # each incident's state changes (RAISED, RESOLVED) with their windows
        ids = [i["alert_id"] for i in incidents]
        changes: dict[str, list] = {}
        for a in _views(request).rows('SELECT alert_id, state, severity, "window", value, threshold, changed_at '
                                      "FROM alerts WHERE list_contains(?, alert_id) ORDER BY changed_at", [ids]):
            changes.setdefault(a.pop("alert_id"), []).append(a)
        for i in incidents:
            i["changes"] = changes.get(i["alert_id"], [])
    return {"alerts": incidents}


# -- predictions ----------------------------------------------------------------------


class PredictionRow(BaseModel):
    features: dict[str, Any]
    prediction: Any = None
    score: float | None = None
    request_id: str | None = Field(None, max_length=200)
    timestamp: float | str | None = Field(None, description="seconds since the epoch, or ISO 8601 (default: now)")


class PredictionBatch(BaseModel):
    model: str
    deployment: str
    version: int | None = None
    rows: list[PredictionRow]
    dropped: int = Field(0, ge=0, description="predictions the caller discarded since its previous batch")


def _micros(i: int, value: float | str | None, now: int) -> int:
    if value is None:
        return now
    if isinstance(value, str):
        try:
            t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(f"rows[{i}].timestamp", value, "must be seconds since the epoch or ISO 8601") \
                from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        return int(t.timestamp() * 1_000_000)
    if value != value or value in (float("inf"), float("-inf")) or value < 0:
        raise ValidationError(f"rows[{i}].timestamp", value, "must be a finite, non-negative number of seconds")
    return int(value * 1_000_000)


@router.post("/predictions", status_code=202, summary="Log a batch of production predictions (as modelog.Monitor)")
async def predictions(request: Request, principal: Principal = requires("write")) -> dict[str, Any]:
    import json

    raw = await request.body()
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValidationError("body", raw[:80].decode(errors="replace"), "must be JSON") from None
    rows = data.get("rows") if isinstance(data, dict) else None
    if isinstance(rows, list) and len(rows) > MAX_ROWS:  # refuse before parsing every row
        raise Problem(413, "Too many rows", f"rows: at most {MAX_ROWS} predictions per request (got {len(rows)}); "
                      "split the batch", "too-large", field="rows", rule=f"at most {MAX_ROWS} per request",
                      limit=MAX_ROWS)
    from starlette.concurrency import run_in_threadpool

    try:
        body = PredictionBatch.model_validate(data)
    except Exception as exc:  # pydantic's ValidationError: answer like FastAPI's request validation
        from pydantic import ValidationError as PydanticError

        if not isinstance(exc, PydanticError):
            raise
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ValidationError(field, err.get("input"), err["msg"]) from None
    return await run_in_threadpool(_publish_predictions, request, principal, body)


def _publish_predictions(request: Request, principal: Principal, body: PredictionBatch) -> dict[str, Any]:
    model = _name("model", body.model)
    deployment = _name("deployment", body.deployment)
    if body.version is not None:
        try:
            _rules.version(body.version)
        except ValueError as exc:
            raise ValidationError("version", body.version, str(exc)) from None
    if not body.rows:
        raise ValidationError("rows", [], "must hold at least one prediction")
    now = now_micros()
    prefix = uuid7() + "-"
    items = [(r.request_id or f"{prefix}{i:x}", _micros(i, r.timestamp, now), r.features, r.prediction, r.score)
             for i, r in enumerate(body.rows)]
    for i, it in enumerate(items):
        for name, value in it[2].items():
            if isinstance(value, (dict, list)):
                raise ValidationError(f"rows[{i}].features[{name!r}]", value, "must be a number, text, bool or null")
        if isinstance(it[3], (dict, list)):
            raise ValidationError(f"rows[{i}].prediction", it[3], "must be a number, text, bool or null")
    client = request.app.state.publisher.client(principal.name)
    key = f"monitor:{model}"
    events = []
    for n, start in enumerate(range(0, len(items), BATCH_ROWS)):
        payload = predictions_payload(model, deployment, body.version, items[start:start + BATCH_ROWS],
                                      body.dropped if n == 0 else 0)
        event = client.events.make("PredictionsLogged", "monitor", key, **payload)
        validate("PredictionsLogged", event.record)
        events.append(event)
    client.emitter.emit(events)
    client.flush()
    return {"model": model, "deployment": deployment, "rows": len(items), "events": len(events),
            "request_ids": [it[0] for it in items]}
