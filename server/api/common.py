"""Small helpers the API's routers share."""

from __future__ import annotations

from datetime import datetime, timezone

from modelog.wire.errors import ValidationError


def query_time(field: str, value: str | None) -> str | None:
    """An ISO 8601 query time as naive UTC text (naive input is UTC); a 422 naming ``field`` otherwise."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(field, value, "must be an ISO 8601 time such as 2026-11-01T12:00Z") from None
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc).replace(tzinfo=None)
    return t.isoformat()
