"""The keys event family: signing keys registered and revoked, and the require-signatures switch.
Base tables (Arrow schemas) and event -> rows. Pure.

``KeyRegistered`` becomes one ``log_keys`` row, ``KeyRevoked`` one ``log_key_revocations`` row; a
``PolicySet`` that sets ``require_signatures`` adds a ``log_signature_policy`` row (projected by the registry
family, which owns PolicySet). Whether such an event is admitted at all is decided before projection
(``trust.py``); the views over them are in ``views_keys.sql``. Times that decide what a key may sign are
the records' log times, joined from ``log_events`` (decision 0015).
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from .rows import Rows, add

TS = pa.timestamp("us")

TABLES: dict[str, pa.Schema] = {
    "log_keys": pa.schema([
        ("event_id", pa.string()), ("key_id", pa.string()), ("principal", pa.string()),
        ("public_key", pa.binary()), ("algorithm", pa.string()), ("capabilities", pa.list_(pa.string())),
        ("bootstrap", pa.bool_()), ("description", pa.string()), ("registered_at", TS),
        ("registered_by", pa.string()),
    ]),
    "log_key_revocations": pa.schema([
        ("event_id", pa.string()), ("key_id", pa.string()), ("reason", pa.string()), ("revoked_at", TS),
        ("revoked_by", pa.string()),
    ]),
    "log_signature_policy": pa.schema([
        ("event_id", pa.string()), ("require_signatures", pa.bool_()), ("set_at", TS), ("set_by", pa.string()),
    ]),
}
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {}
VIEWS: tuple[str, ...] = ("signing_keys", "signature_policy")
VIEWS_SQL = "views_keys.sql"


def _key_registered(r: dict, out: Rows) -> None:
    env = r["envelope"]
    add(out, "log_keys", event_id=env["event_id"], key_id=r["key_id"], principal=r["principal"],
        public_key=r["public_key"], algorithm=r.get("algorithm", "ed25519"),
        capabilities=list(r.get("capabilities", [])), bootstrap=bool(r.get("bootstrap")),
        description=r.get("description"), registered_at=env["occurred_at"], registered_by=env["actor"]["principal"])


def _key_revoked(r: dict, out: Rows) -> None:
    env = r["envelope"]
    add(out, "log_key_revocations", event_id=env["event_id"], key_id=r["key_id"], reason=r.get("reason"),
        revoked_at=env["occurred_at"], revoked_by=env["actor"]["principal"])


def signature_policy_rows(r: dict, out: Rows) -> None:
    """The require-signatures switch of a PolicySet record, when it sets one."""
    if r.get("require_signatures") is None:
        return
    env = r["envelope"]
    add(out, "log_signature_policy", event_id=env["event_id"], require_signatures=bool(r["require_signatures"]),
        set_at=env["occurred_at"], set_by=env["actor"]["principal"])


def _checkpoint(r: dict, out: Rows) -> None:
    """Checkpoints belong on the checkpoints topic, which the projector does not read (``modelog audit
    verify`` does, decision 0023); one found on a projected topic is only an audit row: it proves nothing."""


PROJECTIONS: dict[str, Callable[[dict, Rows], None]] = {
    "KeyRegistered": _key_registered,
    "KeyRevoked": _key_revoked,
    "LogCheckpoint": _checkpoint,
}
