"""Reads for the server: parameterised SQL over the views, wherever they are (processor, lake, file).

Every read a route makes for a caller is scoped to the caller (decision 0022): :func:`views_for` gives the
request's :class:`Views` bound to the principal its token authenticated, and the processor answers with only
what that principal may read (processors/scope.py). A row out of scope is absent, so a list leaves it out and
a read by id answers 404, as for a row that does not exist. Only the token lookup reads unscoped: the server
asks as itself (its ``delegate`` key).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from modelog.consumers.query import query_arrow
from modelog.sdk.keys import SERVER_PRINCIPAL
from modelog.wire.settings import Settings


class Views:
    """The views as the server reads them: every value bound to a ``?`` placeholder, never pasted.

    ``principal``: whose reads these are (None: the server's own, unscoped -- the token lookup only)."""

    def __init__(self, settings: Settings, principal: str | None = None) -> None:
        self.settings = settings
        self.principal = principal

    def scoped(self, principal: str) -> Views:
        """These views as ``principal`` may read them."""
        return Views(self.settings, principal)

    def table(self, sql: str, params: list | tuple | None = None, as_of: str | None = None) -> pa.Table:
        return query_arrow(sql, self.settings, params=params, as_of=as_of, on_behalf_of=self.principal,
                           signer_principal=SERVER_PRINCIPAL)

    def rows(self, sql: str, params: list | tuple | None = None) -> list[dict[str, Any]]:
        return self.table(sql, params).to_pylist()

    def one(self, sql: str, params: list | tuple | None = None) -> dict[str, Any] | None:
        rows = self.rows(sql, params)
        return rows[0] if rows else None

    def token(self, token_id: str) -> dict[str, Any] | None:
        """The ``api_tokens`` row of ``token_id`` (the authority's lookup)."""
        return self.one("SELECT * FROM api_tokens WHERE token_id = ?", [token_id])


def views_for(request) -> Views:
    """The views as the request's authenticated caller may read them (set by the route's ``requires``).
    A request with no authenticated caller reads as ANONYMOUS, a name no grant can hold: nothing, once the log
    is governed."""
    views = request.app.state.views
    principal = getattr(request.state, "principal", None)
    scoped = getattr(views, "scoped", None)
    if scoped is None:  # a test double without scoping
        return views
    return scoped(principal.name if principal is not None else ANONYMOUS)


ANONYMOUS = "(anonymous)"
