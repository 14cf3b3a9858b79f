"""``GET /stream``: server-sent events fed from the log (the server's one live consumer), not from the views.

Events: ``metrics`` (points of a MetricsLogged batch), ``run`` (started, ended with its status),
``decision`` (a governed request decided), ``alert`` (raised or resolved); ``data`` is JSON and
``id`` the event id. ``run_id=`` filters metrics and run events, ``model=`` decisions and alerts.
A ``: subscribed`` comment says the stream is live (everything logged after it is delivered);
a ``: heartbeat`` comment follows every 15 s of quiet.
"""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from modelog.server.auth import Principal, requires
from modelog.server.encoding import finite
from modelog.server.stream import live_feed

router = APIRouter(tags=["live"])

HEARTBEAT_SECONDS = 15.0
READY_WAIT = 30.0


def sse(event: str, data: object, event_id: str | None = None) -> str:
    text = json.dumps(finite(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str)
    return (f"id: {event_id}\n" if event_id else "") + f"event: {event}\ndata: {text}\n\n"


def _check_scope(request: Request, principal: Principal, run_id: str | None, model: str | None) -> None:
    """The live feed reads the log, not the views: once governed, a principal that does not read everything
    (processors/scope.py) must name a run of a readable experiment or a readable model; else 404, as for a
    run or model that does not exist (decision 0022)."""
    from modelog.wire.roles import scope_of
    from modelog.server.problems import not_found

    views = request.app.state.views  # the server's own reads: the scope is computed here
    admins = [r["principal"] for r in views.rows("SELECT principal FROM signing_keys WHERE bootstrap AND "
                                                 "status = 'active'")]
    if not admins:
        return  # not governed: everyone reads everything
    grants = views.rows("SELECT principal, role, model, experiment FROM role_assignments WHERE principal = ?",
                        [principal.name])
    scope = scope_of(principal.name, grants, True, admins)
    if scope.everything:
        return
    if run_id is None and model is None:
        raise not_found("the stream of every event: name a run_id or a model you may read")
    if run_id is not None:
        row = views.one("SELECT experiment FROM runs WHERE run_id = ?", [run_id])
        if row is None or row["experiment"] not in scope.experiments:
            raise not_found(f"run_id: no run {run_id!r}")
    if model is not None and model not in scope.models:
        raise not_found(f"model: no model {model!r}")


@router.get("/stream", summary="Live events (text/event-stream): metrics, run, decision, alert",
            response_class=StreamingResponse)
async def stream(request: Request, run_id: str | None = None, model: str | None = None,
                 principal: Principal = requires("read")) -> StreamingResponse:
    await asyncio.to_thread(_check_scope, request, principal, run_id, model)
    feed = live_feed(request.app)
    sub = feed.subscribe(run_id, model)

    async def events():
        try:
            deadline = time.monotonic() + READY_WAIT
            while not feed.ready:
                if feed.error or time.monotonic() > deadline:
                    yield sse("error", {"detail": f"the live feed cannot read the log: {feed.error or 'timeout'}"})
                    return
                await asyncio.sleep(0.05)
            yield ": subscribed\n\n"
            while True:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_SECONDS)
                except (asyncio.TimeoutError, TimeoutError):
                    if await request.is_disconnected():
                        return
                    yield ": heartbeat\n\n"
                    continue
                if item is None:  # the feed stopped (shutdown, error) or this client fell too far behind
                    why = "too slow" if sub.overflowed else (feed.error or "server shutting down")
                    yield sse("error", {"detail": f"stream ended: {why}; reconnect"})
                    return
                yield sse(item.kind, item.data, item.event_id)
        finally:
            feed.unsubscribe(sub)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
