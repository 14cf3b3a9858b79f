"""The web UI: server-rendered pages (Jinja2, autoescaped), small vanilla JavaScript modules, no Node build.

Login: ``/?token=…`` (the URL ``modelog serve`` prints) or the login form exchange a token for an
HttpOnly, SameSite=Strict session cookie, then redirect to a URL without the token.

Authorization: every page goes through :func:`_principal` — no session (or a token revoked or expired
since login) redirects to ``/login?next=…``; a principal without the ``read`` permission gets 403.
Pages are shells plus, where the page is a list the server can render at once (models, monitoring,
audit, lineage), rows rendered here from the views with bound parameters and Jinja's escaping, or the
same data embedded as JSON (``|tojson`` escapes ``<``, ``>``, ``&``, ``'``) for the scripts that draw
it. The tracking pages (runs table, run, compare) fetch the JSON API with the session cookie; writes
(approve, reject) go through the API with the ``X-CSRF-Token`` header. Scripts build DOM with
``textContent`` / ``createElement`` only. Decision: docs/decisions/0011-web-ui.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from modelog.server.auth import SESSION_COOKIE, SESSION_SECONDS, Principal, TokenAuthority, requires
from modelog.server.problems import Problem
from modelog.server.views import views_for

HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))  # autoescape on for .html
TEMPLATES.env.filters["pathquote"] = lambda value: quote(str(value), safe="")  # one path segment, "/" included
API = "/api/v1"
AUDIT_PAGE = 100
P_VALUE_METHODS = ("ks", "chisquare", "z")  # drift when the score is BELOW the threshold (docs/drift.md)


# the distinct param, metric and tag keys of an experiment's runs (at most 500 of each, sorted)
COLUMN_KEYS_SQL = " UNION ALL ".join(
    f"(SELECT DISTINCT '{kind}' AS kind, key FROM {view} WHERE run_id IN (SELECT run_id FROM runs WHERE experiment = ?) "
    "ORDER BY key LIMIT 500)" for kind, view in (("params", "params"), ("metrics", "latest_metrics"), ("tags", "tags")))


def _safe_next(to: str | None) -> str:
    return to if to and to.startswith("/") and not to.startswith("//") and "\\" not in to else "/"


def _login(request: Request, token: str, to: str | None = "/") -> Response:
    authority: TokenAuthority = request.app.state.authority
    sid, _, _ = authority.open_session(token.strip())
    resp = RedirectResponse(_safe_next(to), status_code=303)
    resp.set_cookie(SESSION_COOKIE, sid, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                    secure=request.url.scheme == "https", path="/")
    return resp


class _Redirect(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _principal(request: Request, permission: str = "read") -> tuple[Principal, str]:
    """The logged-in principal and the session's CSRF token, or a redirect to the login page."""
    authority: TokenAuthority = request.app.state.authority
    session = authority.session(request.cookies.get(SESSION_COOKIE))
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if session is None:
        raise _Redirect(RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303))
    try:
        principal = authority.authenticate(session.token)
    except Problem:
        authority.close_session(request.cookies.get(SESSION_COOKIE))
        raise _Redirect(RedirectResponse(f"/login?next={quote(here, safe='')}&error=session+ended",
                                         status_code=303)) from None
    if not principal.can(permission):
        raise Problem(403, "Forbidden", f"{principal.name} lacks the {permission!r} permission", "forbidden")
    return principal, session.csrf


def _user(principal: Principal) -> dict[str, Any]:
    return {"name": principal.name, "roles": list(principal.roles), "permissions": sorted(principal.permissions),
            "can_approve": principal.can("approve")}


def _render(request: Request, template: str, nav: str, status: int = 200, **ctx: Any) -> Response:
    principal, csrf = _principal(request)
    return TEMPLATES.TemplateResponse(request, template, {"csrf": csrf, "user": _user(principal), "nav": nav,
                                                          **ctx}, status_code=status)


def _views(request: Request):
    return views_for(request)  # scoped to the caller (decision 0022)


def _safe_rows(views, sql: str, params: list | None = None) -> list[dict[str, Any]]:
    """Rows of a view that may not exist yet on an older views file: none rather than a 500."""
    from modelog.wire.errors import QueryError

    try:
        return views.rows(sql, params)
    except QueryError:
        return []


def install(app: FastAPI) -> None:
    """Add the UI's routes and static files to ``app``."""
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(_Redirect)
    async def _redirect(request: Request, exc: _Redirect) -> Response:
        return exc.response

    @app.get(f"{API}/me", tags=["ui"], summary="Who am I: principal, roles, permissions")
    def me(principal: Principal = requires("read")) -> dict[str, Any]:
        return _user(principal)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, error: str | None = None, next: str | None = None) -> Response:  # noqa: A002
        return TEMPLATES.TemplateResponse(request, "login.html", {"error": error, "next": _safe_next(next)})

    @app.post("/login", include_in_schema=False)
    def login(request: Request, token: str = Form(...), next: str = Form("/")) -> Response:  # noqa: A002
        try:
            return _login(request, token, next)
        except Problem as exc:
            return TEMPLATES.TemplateResponse(request, "login.html", {"error": exc.detail, "next": _safe_next(next)},
                                              status_code=401)

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        request.app.state.authority.close_session(request.cookies.get(SESSION_COOKIE))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request, token: str | None = None) -> Response:
        if token:  # the URL `modelog serve` prints: log in, then drop the token from the address bar
            try:
                return _login(request, token)
            except Problem as exc:
                return TEMPLATES.TemplateResponse(request, "login.html", {"error": exc.detail, "next": "/"},
                                                  status_code=401)
        _principal(request)
        experiments = _views(request).rows("SELECT experiment, description, created_at, created_by, run_count, "
                                           "last_run_at FROM experiments ORDER BY last_run_at DESC NULLS LAST, "
                                           "experiment")
        return _render(request, "experiments.html", "experiments", experiments=experiments)

    @app.get("/experiments/{name:path}", response_class=HTMLResponse, include_in_schema=False)
    def experiment(request: Request, name: str) -> Response:
        _principal(request)
        views = _views(request)
        row = views.one("SELECT * FROM experiments WHERE experiment = ?", [name])
        keys: dict[str, list[str]] = {"params": [], "metrics": [], "tags": []}
        for r in views.rows(COLUMN_KEYS_SQL, [name] * 3):  # the column picker's keys, one query
            keys[r["kind"]].append(r["key"])
        for listed in keys.values():
            listed.sort()
        return _render(request, "runs.html", "experiments", experiment=name, info=row, keys=keys,
                       status=404 if row is None else 200)

    @app.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def run(request: Request, run_id: str) -> Response:
        _principal(request)
        row = _views(request).one("SELECT run_id, name, experiment, status FROM runs WHERE run_id = ?", [run_id])
        return _render(request, "run.html", "experiments", run=row, run_id=run_id, status=200 if row else 404)

    @app.get("/compare", response_class=HTMLResponse, include_in_schema=False)
    def compare(request: Request, run: list[str] = Query(default_factory=list)) -> Response:
        _principal(request)
        ids = list(dict.fromkeys(r for r in run if r))[:50]
        runs = _views(request).rows("SELECT run_id, name, experiment, status FROM runs WHERE list_contains(?, run_id)",
                                    [ids]) if ids else []
        by_id = {r["run_id"]: r for r in runs}
        return _render(request, "compare.html", "experiments", runs=[by_id[i] for i in ids if i in by_id],
                       missing=[i for i in ids if i not in by_id])

    @app.get("/models", response_class=HTMLResponse, include_in_schema=False)
    def models(request: Request) -> Response:
        _principal(request)
        rows = _safe_rows(_views(request), "SELECT m.*, (SELECT count(*) FROM requests r WHERE r.model = m.model "
                          "AND r.status = 'PENDING') AS pending FROM models m ORDER BY m.model")
        return _render(request, "models.html", "models", models=rows)

    @app.get("/models/{name:path}", response_class=HTMLResponse, include_in_schema=False)
    def model(request: Request, name: str) -> Response:
        _principal(request)
        views = _views(request)
        info = views.one("SELECT * FROM models WHERE model = ?", [name])
        versions = views.rows("SELECT * FROM model_versions WHERE model = ? ORDER BY version DESC", [name])
        run_ids = [v["run_id"] for v in versions if v.get("run_id")]
        metrics: dict[str, dict[str, Any]] = {}
        for m in (views.rows("SELECT run_id, key, value FROM latest_metrics WHERE list_contains(?, run_id) "
                             "ORDER BY key", [run_ids]) if run_ids else []):
            metrics.setdefault(m["run_id"], {})[m["key"]] = m["value"]
        history = views.rows("SELECT version, stage, valid_from, valid_to, request_id FROM stage_history "
                             "WHERE model = ? ORDER BY version, seq", [name])
        requests_ = views.rows("SELECT * FROM requests WHERE model = ? ORDER BY requested_at DESC LIMIT 200", [name])
        deployments = views.rows("SELECT * FROM deployments WHERE model = ? ORDER BY environment, deployed_at DESC",
                                 [name])
        envs: dict[str, list[dict[str, Any]]] = {}
        for d in deployments:
            envs.setdefault(d["environment"], []).append(d)
        timeline = [{"version": h["version"], "stage": h["stage"], "from": _iso(h["valid_from"]),
                     "to": _iso(h["valid_to"])} for h in history]
        return _render(request, "model.html", "models", model=name, info=info, versions=versions, metrics=metrics,
                       requests=requests_, pending=[r for r in requests_ if r["status"] == "PENDING"],
                       envs=envs, timeline=timeline, status=200 if info or versions else 404)

    @app.get("/lineage", response_class=HTMLResponse, include_in_schema=False)
    def lineage(request: Request, node: str | None = None, depth: int = Query(3, ge=1, le=10)) -> Response:
        _principal(request)
        views = _views(request)
        graph = _graph(views, node, depth) if node else None
        recent = [] if node else _safe_rows(
            views, "SELECT node, kind, upstream_edges, downstream_edges FROM lineage_nodes "
                   "WHERE kind IN ('model', 'deployment', 'dataset') ORDER BY kind, node LIMIT 200")
        return _render(request, "lineage.html", "lineage", node=node, depth=depth, graph=graph, nodes=recent)

    @app.get("/monitoring", response_class=HTMLResponse, include_in_schema=False)
    def monitoring(request: Request, model: str | None = None, deployment: str | None = None) -> Response:
        _principal(request)
        views = _views(request)
        pairs = _safe_rows(views, "SELECT model, deployment, count(*) AS windows, max(window_end) AS last_window "
                                  "FROM drift_windows GROUP BY ALL ORDER BY model, deployment")
        incidents_sql = "SELECT * FROM alert_incidents WHERE (? IS NULL OR model = ?) AND (? IS NULL OR deployment = ?) "
        incidents = _safe_rows(views, incidents_sql + "ORDER BY status = 'OPEN' DESC, raised_at DESC LIMIT 200",
                               [model, model, deployment, deployment])
        drift = perf = None
        if model and deployment:
            rows = _safe_rows(views, "SELECT \"window\", window_end, \"column\", method, score, threshold, drift "
                                     "FROM drift_metrics WHERE model = ? AND deployment = ? "
                                     "ORDER BY \"window\" DESC LIMIT 3000", [model, deployment])
            drift = _heatmap(rows)
            perf = _safe_rows(views, "SELECT * FROM performance WHERE model = ? AND deployment = ? "
                                     "ORDER BY \"window\" LIMIT 500", [model, deployment])
        return _render(request, "monitoring.html", "monitoring", pairs=pairs, model=model, deployment=deployment,
                       incidents=incidents, drift=drift, perf=perf)

    @app.get("/audit", response_class=HTMLResponse, include_in_schema=False)
    def audit(request: Request, q: str = "", actor: str = "", event_type: str = "", before: str | None = None) -> Response:
        _principal(request)
        views = _views(request)
        where, params = ["TRUE"], []
        if actor:
            where.append("a.actor = ?")
            params.append(actor)
        if event_type:
            where.append("a.event_type = ?")
            params.append(event_type)
        if q:
            where.append("(a.entity_key ILIKE ? OR a.event_type ILIKE ? OR a.actor ILIKE ? OR w.why ILIKE ?)")
            like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            params += [like] * 4
        if before:  # keyset: "<occurred_at>|<event_id>" of the previous page's last row
            at, _, eid = before.partition("|")
            where.append("(epoch_us(a.occurred_at), a.event_id) < (CAST(? AS BIGINT), ?)")
            params += [int(at) if at.lstrip("-").isdigit() else 0, eid]
        sql = (f"SELECT a.*, epoch_us(a.occurred_at) AS at_us, w.why FROM audit_log a LEFT JOIN ({_WHY}) w "
               f"ON w.event_id = a.event_id WHERE {' AND '.join(where)} "
               f"ORDER BY a.occurred_at DESC, a.event_id DESC LIMIT {AUDIT_PAGE + 1}")
        rows = views.rows(sql, params)
        more = len(rows) > AUDIT_PAGE
        rows = rows[:AUDIT_PAGE]
        cursor = f"{rows[-1]['at_us']}|{rows[-1]['event_id']}" if more and rows else None
        types = [r["event_type"] for r in views.rows("SELECT DISTINCT event_type FROM audit_log ORDER BY 1")]
        return _render(request, "audit.html", "audit", rows=rows, q=q, actor=actor, event_type=event_type,
                       types=types, cursor=cursor, first=before is None)

    @app.get("/audit/{event_id}", response_class=HTMLResponse, include_in_schema=False)
    def audit_event(request: Request, event_id: str) -> Response:
        _principal(request)
        row = _views(request).one(f"SELECT a.*, w.why FROM audit_log a LEFT JOIN ({_WHY}) w ON w.event_id = "
                                  "a.event_id WHERE a.event_id = ?", [event_id])
        return _render(request, "event.html", "audit", event=row, event_id=event_id,
                       event_json=json.dumps(row, default=str, indent=2) if row else None)


# the "why" of an audit row: the comment or reason the event carried, where a view keeps it
_WHY = ("SELECT event_id, comment AS why FROM approvals WHERE comment IS NOT NULL "
        "UNION ALL SELECT event_id, reason FROM decisions WHERE event_id IS NOT NULL "
        "UNION ALL SELECT event_id, comment FROM deployments WHERE comment IS NOT NULL")


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else (None if value is None else str(value))


def _graph(views, node: str, depth: int) -> dict[str, Any]:
    """The node, what it came from and what was made from it: nodes with a side and a layer, and edges."""
    up = _safe_rows(views, "SELECT node, kind, relation, via, depth FROM lineage_upstream(?, ?)", [node, depth])
    down = _safe_rows(views, "SELECT node, kind, relation, via, depth FROM lineage_downstream(?, ?)", [node, depth])
    kind = node.split(":", 1)[0] if ":" in node else "?"
    nodes: dict[str, dict[str, Any]] = {node: {"id": node, "kind": kind, "layer": 0}}
    edges: list[dict[str, str]] = []
    for r in up:
        nodes.setdefault(r["node"], {"id": r["node"], "kind": r["kind"], "layer": -int(r["depth"])})
        edges.append({"src": r["node"], "dst": r["via"], "relation": r["relation"]})
    for r in down:
        nodes.setdefault(r["node"], {"id": r["node"], "kind": r["kind"], "layer": int(r["depth"])})
        edges.append({"src": r["via"], "dst": r["node"], "relation": r["relation"]})
    seen, unique = set(), []
    for e in edges:
        k = (e["src"], e["dst"], e["relation"])
        if k not in seen:
            seen.add(k)
            unique.append(e)
    return {"root": node, "nodes": list(nodes.values()), "edges": unique, "upstream": len(up), "downstream": len(down)}


def _heatmap(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Drift scores as a column × window grid (newest 30 windows), each cell the score and whether it drifted."""
    windows = sorted({r["window"] for r in rows})[-30:]
    columns = sorted({r["column"] for r in rows})
    cells: dict[tuple[str, Any], dict[str, Any]] = {}
    for r in rows:
        if r["window"] in windows:
            cells[(r["column"], r["window"])] = r
    grid = [{"column": c, "cells": [_cell(cells.get((c, w))) for w in windows]} for c in columns]
    return {"windows": windows, "rows": grid}


def _cell(r: dict[str, Any] | None) -> dict[str, Any] | None:
    if r is None:
        return None
    score, threshold = r.get("score"), r.get("threshold")
    level = 0.0
    if score is not None and threshold:  # 0: far from drift, 0.5: at the threshold, 1: twice as far past it
        ratio = float(score) / (2 * float(threshold))
        level = max(0.0, min(1.0, 1 - ratio if r.get("method") in P_VALUE_METHODS else ratio))
    return {"score": score, "threshold": threshold, "drift": bool(r.get("drift")), "method": r.get("method"),
            "level": round(level, 2)}
