"""The privacy event family: fields marked sensitive, sealed values, subjects erased (decision 0018).
Base tables (Arrow schemas), event -> rows, and the opening of sealed values. Pure.

* A ``PolicySet`` with ``sensitive`` not null replaces the list of param and tag keys whose values are
  personal data (``log_sensitive_fields``; projected by the registry family, which owns PolicySet). Writers
  read the list (the ``sensitive_fields`` view) before they publish and seal those values.
* A sealed value (:mod:`modelog.wire.sealing`) in a ``ParamsLogged``, ``TagsSet`` or ``RunStarted``, or a
  sealed ``uri`` of a ``DatasetVersionLogged`` (field ``uri:<dataset>@<version>``), is opened
  with its subject's data key before it is projected: the views hold the plaintext, the log only ciphertext.
  Each one leaves a ``log_sealed`` row (which row of which table, which subject and key), so an erasure
  can find the plaintext again. A value whose key is gone or erased is projected as ``[erased]``.
* A sealed feature column of a ``PredictionsLogged`` (``sealed``: one value per request, field
  ``feature:<model>/<column>/<request id>``) is opened into ``numbers`` or ``strings`` (a ``log_sealed`` row per
  value: key the column, request_id the row); a value that does not open is missing (NULL).
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
        ("model", pa.string()),  # kind 'feature': the model (added with feature columns: last, as ALTER TABLE adds it)
    ]),
    # one row per sealed value projected: the row it became (event_id + table + key) and whose key sealed it;
    # field 'dataset': a DatasetVersionLogged's uri (run_id NULL, key the dataset name)
    "log_sealed": pa.schema([
        ("event_id", pa.string()), ("field", pa.string()), ("run_id", pa.string()), ("key", pa.string()),
        ("subject", pa.string()), ("key_id", pa.string()),
        ("request_id", pa.string()),  # field 'feature': the prediction's row (key: the column); last, as ALTER adds it
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
        add(out, "log_sensitive_fields", kind=None, key=None, model=None, **common)
    for f in fields:
        add(out, "log_sensitive_fields", kind=str(f["kind"]).lower(), key=f["key"], model=f.get("model"), **common)


def _subject_erased(r: dict, out: Rows) -> None:
    env = r["envelope"]
    common = dict(event_id=env["event_id"], erased_at=env["occurred_at"], subject=r["subject"],
                  reason=r.get("reason"), erased_by=env["actor"]["principal"])
    for key_id in r.get("key_ids") or [None]:
        add(out, "log_erasures", key_id=key_id, **common)


PROJECTIONS: dict[str, Callable[[dict, Rows], None]] = {
    "SubjectErased": _subject_erased,
}

SEALABLE = frozenset({"ParamsLogged", "TagsSet", "RunStarted", "DatasetVersionLogged", "PredictionsLogged"})


def open_column(model: str, col: dict, request_ids: list[str], open_value: Callable[[str, str], Opened]
                ) -> tuple[dict, list[Opened | None]]:
    """A PredictionsLogged column with its sealed values opened into ``numbers`` or ``strings`` (by the
    sealed kind, so an erased column lands where the opened one did), and the :class:`Opened` of each row
    (None: missing). A value that does not open (key gone, erased, moved to another row) is missing."""
    sealed = col["sealed"]
    text = sealed["kind"] == "TEXT"
    values: list = []
    opened: list[Opened | None] = []
    for rid, token in zip(request_ids, sealed["values"]):
        if token is None:
            values.append(None)
            opened.append(None)
            continue
        o = open_value(f"feature:{model}/{col['name']}/{rid}", token)
        opened.append(o)
        v = None if o.key_id is None or o.text == ERASED else o.text
        if v is not None and not text:
            try:
                v = float(v)
            except ValueError:
                v = None
        values.append(v)
    return ({**col, "numbers": [] if text else values, "strings": values if text else [], "sealed": None},
            opened)


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
    if event_type == "PredictionsLogged":
        if not any(c.get("sealed") for c in record["columns"]):
            return record
        columns = []
        for col in record["columns"]:
            if col.get("sealed"):
                col, opened = open_column(record["model"], col, record["request_ids"], open_value)
                for rid, o in zip(record["request_ids"], opened):
                    if o is not None and o.key_id is not None:
                        add(out, "log_sealed", event_id=eid, field="feature", run_id=None, key=col["name"],
                            subject=o.subject, key_id=o.key_id, request_id=rid)
            columns.append(col)
        return {**record, "columns": columns}
    if event_type == "DatasetVersionLogged":
        o = open_value(f"uri:{record['dataset']}@{record['version']}", record["uri"])
        if o.key_id is None:
            return record
        add(out, "log_sealed", event_id=eid, field="dataset", run_id=None, key=record["dataset"],
            subject=o.subject, key_id=o.key_id, request_id=None)
        return {**record, "uri": o.text}
    run_id = record["run_id"]
    changed = None
    if event_type == "ParamsLogged":
        params = []
        for p in record["params"]:
            o = open_value(f"param:{p['key']}", p["value"])
            if o.key_id is not None:
                add(out, "log_sealed", event_id=eid, field="param", run_id=run_id, key=p["key"],
                    subject=o.subject, key_id=o.key_id, request_id=None)
                p = {**p, "value": o.text}
                changed = True
            params.append(p)
        return {**record, "params": params} if changed else record
    tags = {}
    for k, v in (record.get("tags") or {}).items():
        o = open_value(f"tag:{k}", v)
        if o.key_id is not None:
            add(out, "log_sealed", event_id=eid, field="tag", run_id=run_id, key=k, subject=o.subject,
                key_id=o.key_id, request_id=None)
            changed = True
        tags[k] = o.text
    return {**record, "tags": tags} if changed else record


def erase_sql() -> list[str]:
    """Statements that replace every value sealed with a key in the relation ``_erased(key_id)`` by
    ``[erased]``, in the base tables and the current-state tables."""
    out = [f"UPDATE log_dataset_versions SET uri = '{ERASED}' WHERE uri IS DISTINCT FROM '{ERASED}' AND event_id IN "
           "(SELECT s.event_id FROM log_sealed s SEMI JOIN _erased USING (key_id) WHERE s.field = 'dataset')"]
    # a prediction's sealed feature values: the map entries stay, their values become NULL (missing), as a
    # rebuild that cannot open them projects them
    sealed = ("SELECT s.event_id, s.request_id, list(s.key) AS cols FROM log_sealed s "
              "SEMI JOIN _erased USING (key_id) WHERE s.field = 'feature' GROUP BY ALL")
    for m in ("features", "feature_text"):
        entry = "{'key': e.key, 'value': CASE WHEN list_contains(x.cols, e.key) THEN NULL ELSE e.value END}"
        out.append(f"UPDATE log_predictions SET {m} = map_from_entries(list_transform(map_entries({m}), "
                   f"lambda e: {entry})) FROM ({sealed}) x WHERE log_predictions.event_id = x.event_id "
                   f"AND log_predictions.request_id = x.request_id AND cardinality({m}) > 0")
    for field, (base, cur) in SEALED_TABLES.items():
        sealed = f"SELECT s.event_id, s.run_id, s.key FROM log_sealed s SEMI JOIN _erased USING (key_id) WHERE s.field = '{field}'"
        for table in (base, cur):
            out.append(f"UPDATE {table} SET value = '{ERASED}' WHERE value IS DISTINCT FROM '{ERASED}' "
                       f"AND (event_id, run_id, key) IN ({sealed})")
    return out
