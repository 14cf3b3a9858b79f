"""The access event family: API tokens issued and revoked. Base tables (Arrow schemas) and event -> rows. Pure.

``TokenIssued`` becomes one ``log_tokens`` row (the token's hash, never the token), ``TokenRevoked``
one ``log_token_revocations`` row. The ``api_tokens`` view over them is in ``views_access.sql``.
(Roles granted per model by ``AccessChanged`` belong to the registry family.)
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from .rows import Rows, add

TS = pa.timestamp("us")

# The first timestamp column of each table is the one time travel (``--as-of``) filters on:
# issued_at before expires_at.
TABLES: dict[str, pa.Schema] = {
    "log_tokens": pa.schema([
        ("event_id", pa.string()), ("token_id", pa.string()), ("principal", pa.string()),
        ("roles", pa.list_(pa.string())), ("token_hash", pa.string()), ("description", pa.string()),
        ("issued_at", TS), ("issued_by", pa.string()), ("expires_at", TS),
    ]),
    "log_token_revocations": pa.schema([
        ("event_id", pa.string()), ("token_id", pa.string()), ("reason", pa.string()), ("revoked_at", TS),
        ("revoked_by", pa.string()),
    ]),
}
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {}
VIEWS: tuple[str, ...] = ("api_tokens",)
VIEWS_SQL = "views_access.sql"


def _token_issued(r: dict, out: Rows) -> None:
    env = r["envelope"]
    add(out, "log_tokens", event_id=env["event_id"], token_id=r["token_id"], principal=r["principal"],
        roles=list(r["roles"]), token_hash=r["token_hash"], description=r.get("description"),
        issued_at=env["occurred_at"], issued_by=env["actor"]["principal"], expires_at=r.get("expires_at"))


def _token_revoked(r: dict, out: Rows) -> None:
    env = r["envelope"]
    add(out, "log_token_revocations", event_id=env["event_id"], token_id=r["token_id"], reason=r.get("reason"),
        revoked_at=env["occurred_at"], revoked_by=env["actor"]["principal"])


PROJECTIONS: dict[str, Callable[[dict, Rows], None]] = {
    "TokenIssued": _token_issued,
    "TokenRevoked": _token_revoked,
}
