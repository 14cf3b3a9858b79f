"""Tracking reads: experiments, runs (filtered, ordered, paged), one run, metric histories (bucketed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from modelog.server.auth import Principal, requires
from modelog.server.buckets import history_query
from modelog.server.filters import SORT_PREFIX, next_page_token, runs_query
from modelog.server.problems import not_found

router = APIRouter(tags=["tracking"])


def _views(request: Request):
    return request.app.state.views


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
