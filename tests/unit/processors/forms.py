"""Shared by the tests of an event's two wire forms (columnar metric batches, decision 0021; columnar
prediction batches, decision 0025): both must give the same rows, alone or mixed in one transaction."""

from __future__ import annotations

from pathlib import Path

from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.store import ViewStore
from modelog.processors.tables import to_arrow
from modelog.wire.codec import Codec


def raw(values: list[bytes], start: int = 0) -> list[RawRecord]:
    return [RawRecord("t", 0, start + i, 1_760_000_000_000 + i, b"k", v) for i, v in enumerate(values)]


def rows_of(store: ViewStore, table: str, ignore: tuple[str, ...] = ()) -> list:
    cur = store.reader().execute(f"SELECT * FROM {table}")
    keep = [i for i, d in enumerate(cur.description) if d[0] not in ignore]
    return sorted(repr(tuple(row[i] for i in keep)) for row in cur.fetchall())


def projected_tables(event_type: str, record: dict, codec: Codec, projector: Projector) -> dict:
    """The Arrow tables the projector makes of one encoded ``record`` (asserting it was applied, not dead)."""
    prepared = projector.prepare(raw([codec.encode(event_type, record)]))
    rows, dead, applied = projector.rows(prepared, set())
    assert (dead, applied) == ([], 1)
    return {t: to_arrow(t, cols) for t, cols in rows.items()}


def views_by_form(tmp_path: Path, forms: dict[str, list[bytes]], tables: tuple[str, ...], per_transaction: int,
                  projector: Projector) -> dict[str, dict[str, list]]:
    """Each form's encoded events applied to a views file of its own, ``per_transaction`` records per
    transaction; the rows of ``tables`` per form."""
    got = {}
    for name, values in forms.items():
        store = ViewStore(tmp_path / f"{name}.duckdb")
        try:
            for lo in range(0, len(values), per_transaction):  # several transactions, each a mix of batches
                stats, dead = store.apply(raw(values[lo:lo + per_transaction], lo), projector)
                assert dead == [] and stats.applied == len(values[lo:lo + per_transaction])
            got[name] = {t: rows_of(store, t) for t in tables}
        finally:
            store.close()
    return got
