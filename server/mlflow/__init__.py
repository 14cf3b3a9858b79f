"""The MLflow gateway: MLflow's REST API (``/api/2.0/mlflow``, ``/ajax-api/2.0/mlflow``) and artifact proxy
(``/api/2.0/mlflow-artifacts``) over modelog, so the stock ``mlflow`` client works with
``MLFLOW_TRACKING_URI=http://<server>`` and ``MLFLOW_TRACKING_TOKEN=<a modelog token>``.

Everything the client sends becomes modelog events through the server's publisher (the same validation,
the token's principal as the actor); reads come from the views. What cannot be mapped is an MLflow-style
error (``{"error_code", "message"}``). docs/mlflow.md has the endpoint table.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelog.server.mlflow.common import ARTIFACTS_PREFIX, PREFIXES, MlflowJSON, error_body, is_gateway
from modelog.wire.errors import ModelogError, QueryError, ValidationError

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Mount the gateway's routes on ``app`` and answer their errors in MLflow's shape (after
    ``problems.install``: the problem handlers are wrapped, other paths keep problem documents)."""
    from modelog.server.mlflow import artifacts, logged_models, registry, tracking

    for prefix in PREFIXES:
        for router in (tracking.router, logged_models.router, registry.router):
            app.include_router(router, prefix=prefix)
    app.include_router(artifacts.router, prefix=ARTIFACTS_PREFIX)
    for exc_class in (ValidationError, QueryError, ModelogError, RequestValidationError,
                      StarletteHTTPException):
        _wrap(app, exc_class)
    from modelog.server.problems import Problem

    _wrap(app, Problem)


def _wrap(app: FastAPI, exc_class: type) -> None:
    inner = app.exception_handlers.get(exc_class)
    if inner is None:
        return

    async def handler(request: Request, exc: Exception):
        response = await inner(request, exc)
        if not is_gateway(request.url.path):
            return response
        code = getattr(exc, "extra", {}).get("error_code") if hasattr(exc, "extra") else None
        if isinstance(exc, StarletteHTTPException) and exc.status_code in (404, 405):
            code = "ENDPOINT_NOT_FOUND"
            exc = StarletteHTTPException(exc.status_code, f"modelog's MLflow gateway does not serve "
                                         f"{request.method} {request.url.path} (docs/mlflow.md lists what it serves)")
            response = await inner(request, exc)
        try:
            detail = json.loads(response.body).get("detail") or str(exc)
        except (ValueError, AttributeError):
            detail = str(exc)
        status = 400 if response.status_code == 422 else response.status_code
        headers = {k: v for k, v in response.headers.items() if k.lower() == "www-authenticate"}
        return MlflowJSON(error_body(status, detail, code), status_code=status, headers=headers)

    app.add_exception_handler(exc_class, handler)
