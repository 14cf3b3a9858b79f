"""``POST /api/v1/sql``: one read-only statement over the views, as ``modelog sql`` runs it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from modelog.server.auth import Principal, requires

router = APIRouter(tags=["sql"])

MAX_ROWS = 10_000


class SqlQuery(BaseModel):
    query: str = Field(max_length=100_000, description="one read-only statement (SELECT, WITH, DESCRIBE, ...)")
    as_of: str | None = Field(None, description="answer with the views as they were at this time (ISO 8601)")


@router.post("/sql", summary="Read-only SQL over the views (rows capped)")
def sql(request: Request, body: SqlQuery, principal: Principal = requires("read")) -> dict[str, Any]:
    from modelog.server.views import views_for

    table = views_for(request).table(body.query, as_of=body.as_of)  # only what the caller may read
    truncated = table.num_rows > MAX_ROWS
    rows = table.slice(0, MAX_ROWS).to_pylist()
    return {"columns": table.column_names, "rows": rows, "row_count": table.num_rows, "truncated": truncated}
