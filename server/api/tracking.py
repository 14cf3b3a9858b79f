"""Tracking reads: experiments, runs (filtered, ordered, paged), one run, metric histories (bucketed),
an artifact's stored bytes (checked against its sha256)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from modelog.server.auth import Principal, requires
from modelog.server.buckets import history_query
from modelog.server.filters import SORT_PREFIX, next_page_token, runs_query
from modelog.sdk import artifacts as _artifacts
from modelog.server.problems import Problem, not_found
from modelog.wire.errors import ArtifactError
from modelog.server.views import views_for

router = APIRouter(tags=["tracking"])


def _views(request: Request):
    return views_for(request)  # scoped to the caller (decision 0022)


@router.get("/experiments", summary="Experiments with their run counts")
def experiments(request: Request, principal: Principal = requires("read")) -> dict[str, Any]:
    rows = _views(request).rows("SELECT experiment, description, created_at, created_by, run_count, last_run_at "
                                "FROM experiments ORDER BY experiment")
    return {"experiments": rows}


ATTACH_SQL = ("SELECT 'params' AS kind, run_id, key, value AS text, NULL::DOUBLE AS num FROM params "
              "WHERE list_contains(?, run_id) "
              "UNION ALL SELECT 'metrics', run_id, key, NULL, value FROM latest_metrics WHERE list_contains(?, run_id) "
              "UNION ALL SELECT 'tags', run_id, key, value, NULL FROM tags WHERE list_contains(?, run_id)")


def _attach(views, runs: list[dict[str, Any]]) -> None:
    """Add params, latest metrics and tags to each run of a page (one query per page)."""
    if not runs:
        return
    ids = [r["run_id"] for r in runs]
    by_id = {r["run_id"]: r for r in runs}
    for r in runs:
        r["params"], r["metrics"], r["tags"] = {}, {}, {}
    table = views.table(ATTACH_SQL, [ids, ids, ids])
    kinds, run_ids, keys, texts, nums = (table.column(c).to_pylist() for c in ("kind", "run_id", "key", "text", "num"))
    for kind, run_id, key, text, num in zip(kinds, run_ids, keys, texts, nums):
        by_id[run_id][kind][key] = num if kind == "metrics" else text


@router.get("/runs", summary="Runs: filter language, order, keyset pagination")
def runs(request: Request, experiment: str | None = None, filter: str | None = None,  # noqa: A002
         order_by: str | None = None, limit: int = Query(100, ge=1, le=1000), page_token: str | None = None,
         principal: Principal = requires("read")) -> dict[str, Any]:
    views = _views(request)
    sql, params = runs_query(experiment, filter, order_by, limit, page_token)
    rows = views.rows(sql, params)
    # a full page may have a next one (which may be empty): its token names this page's last row
    token = next_page_token(rows[-1], order_by) if len(rows) == limit else None
    for r in rows:
        for k in [k for k in r if k.startswith(SORT_PREFIX)]:
            del r[k]
    _attach(views, rows)
    return {"runs": rows, "next_page_token": token}


@router.get("/runs/{run_id}", summary="One run: params, tags, latest metrics, environment, artifacts, datasets")
def run(request: Request, run_id: str, principal: Principal = requires("read")) -> dict[str, Any]:
    views = _views(request)
    row = views.one("SELECT * FROM runs WHERE run_id = ?", [run_id])
    if row is None:
        raise not_found(f"run_id: no run {run_id!r}")
    row["params"] = views.rows("SELECT key, value, value_type, logged_at FROM params WHERE run_id = ? ORDER BY key",
                               [run_id])
    row["tags"] = views.rows("SELECT key, value, set_at FROM tags WHERE run_id = ? ORDER BY key", [run_id])
    row["metrics"] = views.rows("SELECT key, value, step, timestamp, min_value, max_value, points FROM latest_metrics "
                                "WHERE run_id = ? ORDER BY key", [run_id])
    row["environment"] = views.one("SELECT * FROM run_environments WHERE run_id = ?", [run_id])
    row["artifacts"] = views.rows("SELECT * FROM artifacts WHERE run_id = ? ORDER BY path", [run_id])
    row["datasets"] = views.rows(
        "SELECT src AS dataset, relation, role FROM lineage_edges WHERE dst = ? AND src LIKE 'dataset:%' "
        "UNION ALL SELECT dst, relation, role FROM lineage_edges WHERE src = ? AND dst LIKE 'dataset:%'",
        [f"run:{run_id}", f"run:{run_id}"])
    return row


@router.get("/runs/{run_id}/artifacts/{path:path}", summary="An artifact's stored bytes, checked against its sha256",
            response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "the bytes; ETag and Repr-Digest carry the sha256"}})
def artifact(request: Request, run_id: str, path: str, principal: Principal = requires("read")) -> StreamingResponse:
    """Stream the artifact's bytes from the artifact store. They are hashed as they go out and the last
    chunk is held back until the sha256 matched: a corrupted object ends the response early (the client
    sees fewer bytes than Content-Length), never a complete wrong file. 422 for a path that could escape
    the run (``..``, ``%2e%2e``, absolute, ``file:``), 404 when the run has no such artifact or it was not
    stored (a reference only), 502 when the stored object is missing or unreadable."""
    settings = request.app.state.settings
    try:
        rows, is_dir = _artifacts.select(run_id, path, settings)
    except ArtifactError as exc:
        raise not_found(str(exc)) from exc
    if is_dir:
        listed = ", ".join(r["path"] for r in rows[:20])
        raise not_found(f"path: {path!r} of run {run_id} is a directory of {len(rows)} artifacts ({listed}); "
                        "get each file")
    row = rows[0]
    if not row["content_address"]:
        raise not_found(f"artifact {path!r} of run {run_id} was not stored (a reference only): its bytes were at "
                        f"{row['uri']}")
    try:
        body = _artifacts.stream(row, settings, hold_last=True)
    except ArtifactError as exc:
        raise Problem(502, "Artifact store", str(exc), "artifact-store", expected=exc.expected) from exc
    name = row["path"].rsplit("/", 1)[-1]
    digest = base64.b64encode(bytes.fromhex(row["sha256"])).decode()
    headers = {"Content-Length": str(row["size_bytes"]), "ETag": f'"{row["sha256"]}"',
               "Repr-Digest": f"sha-256=:{digest}:",
               "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"}
    return StreamingResponse(body, media_type=row["media_type"] or "application/octet-stream", headers=headers)


def _history(views, run_ids: list[str], key: str, max_points: int, x: str, min_step: int | None,
             max_step: int | None) -> dict[str, Any]:
    sql, params = history_query(run_ids, key, max_points, x=x, min_step=min_step, max_step=max_step)
    series: dict[str, list[dict[str, Any]]] = {r: [] for r in run_ids}
    for b in views.rows(sql, params):
        series.setdefault(b.pop("run_id"), []).append(b)
    return {"key": key, "max_points": max_points, "x": x, "series": series}


@router.get("/runs/{run_id}/metrics/{key}", summary="A metric's history, bucketed on the server (spikes survive)")
def metric_history(request: Request, run_id: str, key: str, max_points: int = Query(1000, ge=1, le=10000),
                   x: str = Query("step", pattern="^(step|time)$"), min_step: int | None = None,
                   max_step: int | None = None, principal: Principal = requires("read")) -> dict[str, Any]:
    views = _views(request)
    if views.one("SELECT 1 AS x FROM runs WHERE run_id = ?", [run_id]) is None:
        raise not_found(f"run_id: no run {run_id!r}")
    out = _history(views, [run_id], key, max_points, x, min_step, max_step)
    return {"run_id": run_id, "key": key, "max_points": max_points, "x": x, "buckets": out["series"][run_id]}


@router.get("/metrics", summary="Histories of one metric across runs, for comparison")
def metrics(request: Request, key: str, run_id: list[str] = Query(..., min_length=1, max_length=50),
            max_points: int = Query(1000, ge=1, le=10000), x: str = Query("step", pattern="^(step|time)$"),
            min_step: int | None = None, max_step: int | None = None,
            principal: Principal = requires("read")) -> dict[str, Any]:
    return _history(_views(request), run_id, key, max_points, x, min_step, max_step)
