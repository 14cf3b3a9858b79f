"""The HTTP server: one ASGI app serving the REST API (``/api/v1``), the web UI (``/``) and the
OpenAPI document (``/api/v1/openapi.json``). Reads come from the views, writes go to the log.

Build it with :func:`create_app`; ``modelog serve`` runs it under uvicorn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from modelog._version import __version__
from modelog.server import problems
from modelog.server.auth import TokenAuthority
from modelog.server.encoding import ApiJSON
from modelog.server.publish import Publisher
from modelog.server.views import Views
from modelog.wire.settings import Settings

API = "/api/v1"


def create_app(settings: Settings, *, views: Views | None = None, publisher: Publisher | None = None,
               authority: TokenAuthority | None = None, ui: bool = True) -> FastAPI:
    """The server's app over ``settings``' views and log."""
    from modelog.server.api import ROUTERS

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        feed = getattr(app.state, "live_feed", None)
        if feed is not None:  # the live consumer of /stream: end its subscribers' streams, close it
            feed.close()
        app.state.publisher.close()

    app = FastAPI(title="modelog", version=__version__, openapi_url=f"{API}/openapi.json", docs_url=f"{API}/docs",
                  redoc_url=None, default_response_class=ApiJSON, lifespan=lifespan,
                  description="Event-sourced ML metadata: reads from the views, writes as events on the log.")
    app.state.settings = settings
    app.state.views = views or Views(settings)
    app.state.publisher = publisher or Publisher(settings)
    app.state.authority = authority or TokenAuthority(app.state.views.token)
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router, prefix=API)
    if ui:
        from modelog.server.ui import install as install_ui

        install_ui(app)

    return app
