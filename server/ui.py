"""The web UI: server-rendered pages (Jinja2, autoescaped), a little vendored JavaScript, no Node build.

Login: ``/?token=…`` (the URL ``modelog serve`` prints) or the login form exchange a token for an
HttpOnly, SameSite=Strict session cookie, then redirect to a URL without the token. Pages read the
same views as the API; forms post with the session's CSRF token.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from modelog.server.auth import SESSION_COOKIE, SESSION_SECONDS, TokenAuthority
from modelog.server.problems import Problem

HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))  # autoescape on for .html


def _login(request: Request, token: str, to: str = "/") -> Response:
    authority: TokenAuthority = request.app.state.authority
    sid, _, _ = authority.open_session(token.strip())
    resp = RedirectResponse(to if to.startswith("/") and not to.startswith("//") else "/", status_code=303)
    resp.set_cookie(SESSION_COOKIE, sid, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                    secure=request.url.scheme == "https", path="/")
    return resp


def install(app: FastAPI) -> None:
    """Add the UI's routes and static files to ``app``."""
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, error: str | None = None) -> Response:
        return TEMPLATES.TemplateResponse(request, "login.html", {"error": error})

    @app.post("/login", include_in_schema=False)
    def login(request: Request, token: str = Form(...)) -> Response:
        try:
            return _login(request, token)
        except Problem as exc:
            return TEMPLATES.TemplateResponse(request, "login.html", {"error": exc.detail}, status_code=401)

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
                return TEMPLATES.TemplateResponse(request, "login.html", {"error": exc.detail}, status_code=401)
        session = request.app.state.authority.session(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return RedirectResponse("/login", status_code=303)
        return TEMPLATES.TemplateResponse(request, "app.html", {"csrf": session.csrf})
