"""Errors as RFC 9457 problem details: ``application/problem+json`` naming the field and the rule.

Every error the API returns has this shape::

    {"type": "https://modelog.dev/problems/validation", "title": "Invalid input", "status": 422,
     "detail": "metrics['loss']: must be a real number (got 'abc')", "field": "metrics['loss']",
     "rule": "must be a real number"}
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelog.wire.errors import ModelogError, QueryError, ValidationError

MEDIA_TYPE = "application/problem+json"
_BASE = "https://modelog.dev/problems/"


class Problem(Exception):
    """An error to answer with a problem document (raise it from any route)."""

    def __init__(self, status: int, title: str, detail: str, kind: str = "about:blank", **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.kind, self.extra = status, title, detail, kind, extra
        self.headers: dict[str, str] = {}


def unauthorized(detail: str) -> Problem:
    p = Problem(401, "Unauthorized", detail, "unauthorized")
    p.headers["WWW-Authenticate"] = 'Bearer realm="modelog"'
    return p


def forbidden(detail: str) -> Problem:
    return Problem(403, "Forbidden", detail, "forbidden")


def not_found(detail: str) -> Problem:
    return Problem(404, "Not found", detail, "not-found")


def response(status: int, title: str, detail: str, kind: str, headers: dict | None = None, **extra: Any) -> JSONResponse:
    body = {"type": kind if kind == "about:blank" else _BASE + kind, "title": title, "status": status,
            "detail": detail, **{k: v for k, v in extra.items() if v is not None}}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` with a problem document."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return response(exc.status, exc.title, exc.detail, exc.kind, exc.headers, **exc.extra)

    @app.exception_handler(ValidationError)
    async def _invalid(request: Request, exc: ValidationError) -> JSONResponse:
        return response(422, "Invalid input", str(exc), "validation", field=getattr(exc, "field", None),
                        rule=getattr(exc, "rule", None))

    @app.exception_handler(QueryError)
    async def _query(request: Request, exc: QueryError) -> JSONResponse:
        return response(400, "Query rejected", str(exc), "query")

    @app.exception_handler(ModelogError)
    async def _modelog(request: Request, exc: ModelogError) -> JSONResponse:
        return response(400, "Request failed", str(exc), "modelog")

    @app.exception_handler(RequestValidationError)
    async def _request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        detail = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors[:5])
        return response(422, "Invalid input", detail, "validation", field=field or None, rule=first.get("msg"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return response(exc.status_code, str(exc.detail), str(exc.detail), "about:blank",
                        getattr(exc, "headers", None))
