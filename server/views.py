"""Reads for the server: parameterised SQL over the views, wherever they are (processor, lake, file)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from modelog.consumers.query import sql_arrow
from modelog.wire.settings import Settings


class Views:
    """The views as the server reads them: every value bound to a ``?`` placeholder, never pasted."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def table(self, sql: str, params: list | tuple | None = None) -> pa.Table:
        return sql_arrow(sql, self.settings, params=params)

    def rows(self, sql: str, params: list | tuple | None = None) -> list[dict[str, Any]]:
        return self.table(sql, params).to_pylist()

    def one(self, sql: str, params: list | tuple | None = None) -> dict[str, Any] | None:
        rows = self.rows(sql, params)
        return rows[0] if rows else None

    def token(self, token_id: str) -> dict[str, Any] | None:
        """The ``api_tokens`` row of ``token_id`` (the authority's lookup)."""
        return self.one("SELECT * FROM api_tokens WHERE token_id = ?", [token_id])
