"""The privacy event family: fields marked sensitive, sealed values, subjects erased (decision 0018).
Base tables (Arrow schemas), event -> rows, and the opening of sealed values. Pure.

* A ``PolicySet`` with ``sensitive`` not null replaces the list of param and tag keys whose values are
  personal data (``log_sensitive_fields``; projected by the registry family, which owns PolicySet). Writers
  read the list (the ``sensitive_fields`` view) before they publish and seal those values.
* A sealed value (:mod:`modelog.wire.sealing`) in a ``ParamsLogged``, ``TagsSet`` or ``RunStarted`` is opened
  with its subject's data key before it is projected: the views hold the plaintext, the log only ciphertext.
  Each one leaves a ``log_sealed`` row (which row of which table, which subject and key), so an erasure
  can find the plaintext again. A value whose key is gone or erased is projected as ``[erased]``.
* ``SubjectErased`` becomes ``log_erasures`` rows (one per deleted key id). The store then replaces every
  value sealed with those keys by ``[erased]`` (``erase_sql``) and rewrites the views file, so the
  plaintext is not left in its free blocks either.

Whatever order the processor reads the run's and the subject's partitions in, a value sealed with an
erased key ends as ``[erased]``: opened first and replaced by the erasure, or not opened at all. So a
rebuild equals the live views.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from modelog.wire.sealing import ERASED, Opened

from .rows import Rows, add

TS = pa.timestamp("us")

TABLES: dict[str, pa.Schema] = {
    # one row per key of a PolicySet that sets the sensitive list; kind NULL: the list it set was empty
    "log_sensitive_fields": pa.schema([
        ("event_id", pa.string()), ("set_at", TS), ("kind", pa.string()), ("key", pa.string()),
        ("set_by", pa.string()),
    ]),
    # one row per sealed value projected: the row it became (event_id + table + key) and whose key sealed it
    "log_sealed": pa.schema([
        ("event_id", pa.string()), ("field", pa.string()), ("run_id", pa.string()), ("key", pa.string()),
        ("subject", pa.string()), ("key_id", pa.string()),
    ]),
    # one row per data key a SubjectErased deleted (key_id NULL: the key store had none)
    "log_erasures": pa.schema([
        ("event_id", pa.string()), ("erased_at", TS), ("subject", pa.string()), ("key_id", pa.string()),
        ("reason", pa.string()), ("erased_by", pa.string()),
    ]),
}
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {}
VIEWS: tuple[str, ...] = ("sensitive_fields", "erasures")
VIEWS_SQL = "views_privacy.sql"

# the tables a sealed value of each field kind lands in: (base table, current-state table)
SEALED_TABLES = {"param": ("log_params", "cur_params"), "tag": ("log_tags", "cur_tags")}


def sensitive_rows(r: dict, out: Rows) -> None:
    """The sensitive list of a PolicySet record, when it sets one."""
    fields = r.get("sensitive")
    if fields is None:
        return
    env = r["envelope"]
    common = dict(event_id=env["event_id"], set_at=env["occurred_at"], set_by=env["actor"]["principal"])
    if not fields:
        add(out, "log_sensitive_fields", kind=None, key=None, **common)
    for f in fields:
        add(out, "log_sensitive_fields", kind=str(f["kind"]).lower(), key=f["key"], **common)


def _subject_erased(r: dict, out: Rows) -> None:
    env = r["envelope"]
    common = dict(event_id=env["event_id"], erased_at=env["occurred_at"], subject=r["subject"],
                  reason=r.get("reason"), erased_by=env["actor"]["principal"])
    for key_id in r.get("key_ids") or [None]:
        add(out, "log_erasures", key_id=key_id, **common)


PROJECTIONS: dict[str, Callable[[dict, Rows], None]] = {
    "SubjectErased": _subject_erased,
}

SEALABLE = frozenset({"ParamsLogged", "TagsSet", "RunStarted"})


def erased_key_ids(events) -> set[str]:
    """The key ids the ``SubjectErased`` records among ``events`` ((id, type, record, ...) tuples) delete."""
    return {k for e in events if e[1] == "SubjectErased" for k in e[2].get("key_ids") or ()}


def unseal(event_type: str, record: dict, open_value: Callable[[str, str], Opened], out: Rows) -> dict:
    """``record`` with its sealed param and tag values opened (a copy; the record itself is not changed),
    and a ``log_sealed`` row in ``out`` for each. Records of other types, and records with nothing sealed,
    are returned as they are."""
    if event_type not in SEALABLE:
        return record
    eid = record["envelope"]["event_id"]
    run_id = record["run_id"]
    changed = None
    if event_type == "ParamsLogged":
        params = []
        for p in record["params"]:
            o = open_value(f"param:{p['key']}", p["value"])
            if o.key_id is not None:
                add(out, "log_sealed", event_id=eid, field="param", run_id=run_id, key=p["key"],
                    subject=o.subject, key_id=o.key_id)
                p = {**p, "value": o.text}
                changed = True
            params.append(p)
        return {**record, "params": params} if changed else record
    tags = {}
    for k, v in (record.get("tags") or {}).items():
        o = open_value(f"tag:{k}", v)
        if o.key_id is not None:
            add(out, "log_sealed", event_id=eid, field="tag", run_id=run_id, key=k, subject=o.subject,
                key_id=o.key_id)
            changed = True
        tags[k] = o.text
    return {**record, "tags": tags} if changed else record


def erase_sql() -> list[str]:
    """Statements that replace every value sealed with a key in the relation ``_erased(key_id)`` by
    ``[erased]``, in the base tables and the current-state tables."""
    out = []
    for field, (base, cur) in SEALED_TABLES.items():
        sealed = f"SELECT s.event_id, s.run_id, s.key FROM log_sealed s SEMI JOIN _erased USING (key_id) WHERE s.field = '{field}'"
        for table in (base, cur):
            out.append(f"UPDATE {table} SET value = '{ERASED}' WHERE value IS DISTINCT FROM '{ERASED}' "
                       f"AND (event_id, run_id, key) IN ({sealed})")
    return out
