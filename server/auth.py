"""Who is calling, and what they may do.

Every API request carries ``Authorization: Bearer <token>``; the UI logs in once with a token and
then carries an HttpOnly, SameSite=Strict session cookie plus a CSRF token in every form. A token
is looked up by its id in the ``api_tokens`` view (issued and revoked by events on the log, only
its sha256 stored) and compared in constant time; revoked, expired, unknown or malformed → 401.
The token's principal is the actor the server stamps on what it publishes: a client cannot choose
it.

Roles → permissions (a route names the one permission it needs, see :func:`requires`):

========== ============================================================================
admin      everything: read, write, registry, approve, admin (tokens)
maintainer read, write, registry (register versions, request promotions and aliases)
approver   read, approve (approve or reject pending requests)
writer     read, write (start runs, log metrics/params/tags, log predictions)
reader     read
========== ============================================================================
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Depends, Request

from modelog.server.problems import forbidden, unauthorized
from modelog.wire.errors import ValidationError
from modelog.wire.sqlauth import token_verdict
from modelog.wire.tokens import parse_token

PERMISSIONS = ("read", "write", "registry", "approve", "admin")
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(PERMISSIONS),
    "maintainer": frozenset({"read", "write", "registry"}),
    "approver": frozenset({"read", "approve"}),
    "writer": frozenset({"read", "write"}),
    "reader": frozenset({"read"}),
}
SESSION_COOKIE = "modelog_session"
SESSION_SECONDS = 12 * 3600


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the token's principal, its roles and the token's id."""

    name: str
    roles: tuple[str, ...]
    token_id: str

    @property
    def permissions(self) -> frozenset[str]:
        out: set[str] = set()
        for role in self.roles:
            out |= ROLE_PERMISSIONS.get(role, frozenset())
        return frozenset(out)

    def can(self, permission: str) -> bool:
        return permission in self.permissions


@dataclass
class Session:
    token: str  # kept in this process's memory only: the session lives no longer than its token
    csrf: str
    expires: float


@dataclass
class TokenAuthority:
    """Authenticates tokens against the ``api_tokens`` view, with a short cache.

    ``lookup(token_id)`` returns the view's row (a dict) or None. A token's verdict is cached for
    ``ttl`` seconds, so a revocation takes effect within ``ttl`` of being projected.
    """

    lookup: Callable[[str], dict | None]
    ttl: float = 2.0
    clock: Callable[[], float] = time.time
    _cache: dict[str, tuple[float, Principal | None, str]] = field(default_factory=dict)
    _sessions: dict[str, Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticate(self, token: str) -> Principal:
        """The principal of ``token``; raises a 401 problem saying why not."""
        try:
            token_id = parse_token(token)
        except ValidationError:
            raise unauthorized("malformed token: expected mlg_<id>_<secret>") from None
        now = self.clock()
        hit = self._cache.get(token)
        if hit is not None and hit[0] > now:
            if hit[1] is None:
                raise unauthorized(hit[2])
            return hit[1]
        row = self.lookup(token_id)
        principal, why = self._verdict(token, row, now)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token] = (now + self.ttl, principal, why)
        if principal is None:
            raise unauthorized(why)
        return principal

    def _verdict(self, token: str, row: dict | None, now: float) -> tuple[Principal | None, str]:
        name, roles, why = token_verdict(token, row, now)  # the rule the SQL endpoint applies too
        if name is None:
            return None, why
        return Principal(name, roles, row["token_id"]), ""

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()

    # -- UI sessions -----------------------------------------------------------------
    def open_session(self, token: str) -> tuple[str, Session, Principal]:
        """Log in with ``token`` (raises 401 if it is not valid): a new session id and its CSRF token."""
        principal = self.authenticate(token)
        sid = secrets.token_urlsafe(32)
        session = Session(token, secrets.token_urlsafe(24), self.clock() + SESSION_SECONDS)
        with self._lock:
            self._sessions[sid] = session
        return sid, session, principal

    def session(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        s = self._sessions.get(sid)
        if s is None or s.expires <= self.clock():
            return None
        return s

    def close_session(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)


def caller(request: Request, basic: bool = False) -> Principal:
    """The authenticated caller: a bearer token, else the UI's session cookie (with CSRF on writes).

    With ``basic`` (the MLflow gateway: ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``), HTTP Basic
    credentials are accepted too: the password is the token, the username is not used (the actor is
    always the token's principal).
    """
    principal = _authenticate(request, basic)
    request.state.principal = principal  # the reads of this request are scoped to it (server/views.py)
    return principal


def _authenticate(request: Request, basic: bool) -> Principal:
    authority: TokenAuthority = request.app.state.authority
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if basic and scheme.lower() == "basic":
            return authority.authenticate(_basic_password(token.strip()))
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("Authorization: expected 'Bearer <token>'"
                               + (" or Basic with the token as the password" if basic else ""))
        return authority.authenticate(token.strip())
    session = authority.session(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise unauthorized("no credentials: send 'Authorization: Bearer <token>' or log in")
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        sent = request.headers.get("x-csrf-token", "")
        if not sent or not hmac.compare_digest(sent, session.csrf):
            raise forbidden("missing or wrong CSRF token (X-CSRF-Token)")
    return authority.authenticate(session.token)  # revoked or expired since login: 401


def _basic_password(credentials: str) -> str:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise unauthorized("Authorization: Basic credentials must be base64 of username:password") from None
    _, sep, password = decoded.partition(":")
    if not sep or not password:
        raise unauthorized("Authorization: Basic credentials need the token as the password")
    return password


def requires(permission: str, *, basic: bool = False):
    """A route dependency: the caller, who must hold ``permission`` (read, write, registry, approve, admin).

    Every data route declares one; ``tests/unit/server`` fails on a route without it. ``basic`` also
    accepts HTTP Basic credentials with the token as the password (the MLflow gateway's routes).
    """
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")

    def dependency(request: Request) -> Principal:
        principal = caller(request, basic)
        if not principal.can(permission):
            raise forbidden(f"{principal.name} lacks the {permission!r} permission "
                            f"(roles: {', '.join(principal.roles) or 'none'})")
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]  (read by the authorization test)
    return Depends(dependency)
