"""Lineage: the graph around one entity, upstream or downstream, as nodes and edges.

Walks the views' ``lineage_upstream`` / ``lineage_downstream`` table macros (cycle-safe), like
``modelog lineage``. The entity is a node id: ``run:<id>``, ``dataset:<name>@<version>`` (a unique
prefix of >= 8 hex digits will do), ``model:<name>/<version>``, ``deployment:<model>/<env>``,
``artifact:<run_id>/<path>``.

``POST /lineage`` takes OpenLineage events (RunEvent, DatasetEvent, JobEvent; spec 2-0-x) and publishes
them as dataset versions and lineage edges (see :mod:`modelog.server.openlineage`, docs/openlineage.md).
"""

from __future__ import annotations

from typing import Any

import json

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from modelog.server import openlineage as _ol
from modelog.server.api.ingest import _publish
from modelog.server.auth import Principal, requires
from modelog.server.problems import Problem, not_found
from modelog.wire import rules as _rules
from modelog.wire.errors import ValidationError
from modelog.server.views import views_for

router = APIRouter(tags=["lineage"])

MAX_DEPTH = 20
MAX_OPENLINEAGE_BYTES = 8 * 1024 * 1024


def resolve(views, entity: str) -> tuple[str, str]:
    """(full node id, kind) of ``entity``; 422 for bad syntax, 404 if unknown, 409 if ambiguous."""
    try:
        kind, parts = _rules.parse_node(entity, version_prefix=True)
    except ValueError as exc:
        raise ValidationError("entity", entity, str(exc)) from None
    if kind == "dataset" and len(parts[1]) < 64:
        name, prefix = parts
        nodes = [r["node"] for r in views.rows("SELECT node FROM dataset_versions WHERE name = ? "
                                               "AND starts_with(version, ?) ORDER BY node", [name, prefix])]
        if len(nodes) > 1:
            raise Problem(409, "Ambiguous entity", f"entity: dataset version prefix {prefix!r} of {name!r} matches "
                          f"{len(nodes)} versions; give more hex digits", "ambiguous", matches=nodes[:20])
        if nodes:
            return nodes[0], kind
    elif views.one("SELECT node FROM lineage_nodes WHERE node = ?", [entity]) is not None:
        return entity, kind
    raise not_found(f"entity: no run, dataset version, artifact, model or deployment {entity!r} in the views")


@router.get("/lineage/{entity:path}", summary="The lineage graph upstream or downstream of an entity")
def lineage(request: Request, entity: str, direction: str = Query("upstream", pattern="^(upstream|downstream)$"),
            depth: int = Query(5, ge=1, le=MAX_DEPTH), principal: Principal = requires("read")) -> dict[str, Any]:
    views = views_for(request)
    node, kind = resolve(views, entity)
    rows = views.rows(f"SELECT node, kind, relation, via, role, depth FROM lineage_{direction}(?, ?) "
                      "ORDER BY depth, node, via", [node, depth])
    nodes: dict[str, dict[str, Any]] = {node: {"id": node, "kind": kind, "depth": 0}}
    edges: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        if r["node"] not in nodes:
            nodes[r["node"]] = {"id": r["node"], "kind": r["kind"], "depth": r["depth"]}
        src, dst = (r["node"], r["via"]) if direction == "upstream" else (r["via"], r["node"])
        key = (src, r["relation"], dst, r["role"])
        if key not in edges:
            edges[key] = {"src": src, "relation": r["relation"], "dst": dst, "role": r["role"]}
    return {"entity": node, "direction": direction, "depth": depth, "nodes": list(nodes.values()),
            "edges": list(edges.values())}


@router.post("/lineage", summary="Record an OpenLineage event (RunEvent, DatasetEvent, JobEvent; spec 2-0-x)")
async def post_openlineage(request: Request, principal: Principal = requires("write")) -> dict[str, Any]:
    """Validates the event, publishes its dataset versions and lineage edges as the token's principal, and
    answers once the broker acknowledged them all. Nothing is published if any part is invalid (422)."""
    raw = await request.body()
    if len(raw) > MAX_OPENLINEAGE_BYTES:
        raise Problem(413, "Request too large", f"body: at most {MAX_OPENLINEAGE_BYTES} bytes per event",
                      "too-large", field="body", rule=f"at most {MAX_OPENLINEAGE_BYTES} bytes",
                      limit=MAX_OPENLINEAGE_BYTES)
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValidationError("body", raw[:80].decode(errors="replace"), "must be JSON") from None
    event = _ol.parse(data)
    client = request.app.state.publisher.client(principal.name)
    events, summary = _ol.events_for(client, event)
    out = await run_in_threadpool(_publish, request, events)
    return {**out, **summary}
