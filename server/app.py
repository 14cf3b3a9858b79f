"""The HTTP server: one ASGI app serving the REST API (``/api/v1``), the web UI (``/``), the OpenAPI
document (``/api/v1/openapi.json``) and, for the stock ``mlflow`` client, MLflow's REST API and artifact
proxy (``modelog.server.mlflow``, docs/mlflow.md). Reads come from the views, writes go to the log.

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
    from modelog.server.mlflow import install as install_mlflow

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
    install_security_headers(app)
    for router in ROUTERS:
        app.include_router(router, prefix=API)
    install_mlflow(app)  # MLflow's REST API and artifact proxy (docs/mlflow.md)
    if ui:
        from modelog.server.ui import install as install_ui

        install_ui(app)

    return app


# Sent with every response. The UI's scripts and styles are files of its own (static/); the page data are
# JSON blocks (<script type="application/json">, never executed); style attributes carry chart levels
# (CSS variables), hence 'unsafe-inline' for styles only. Swagger UI (/api/v1/docs) loads its scripts from
# a CDN and inlines one, so that page alone goes without a policy.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS and the policy to every HTTP response (streams untouched)."""

    def __init__(self, app) -> None:
        self.app = app
        self.extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
        self.csp = (b"content-security-policy", CONTENT_SECURITY_POLICY.encode())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with_csp = scope.get("path") != f"{API}/docs"

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                added = [h for h in self.extra + ([self.csp] if with_csp else []) if h[0] not in present]
                message = {**message, "headers": list(message.get("headers", [])) + added}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_security_headers(app: FastAPI) -> None:
    app.add_middleware(SecurityHeaders)
