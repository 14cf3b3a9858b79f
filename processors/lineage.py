"""The lineage event family: base tables (Arrow schemas) and event -> rows projections. Pure.

``DatasetVersionLogged`` becomes one ``log_dataset_versions`` row, plus one ``log_lineage``
row per ``derived_from`` entry (``dataset:<src>@<v> --derived--> dataset:<name>@<version>``).
``LineageRecorded`` becomes one ``log_lineage`` row. ``facets`` (a JSON object as text, e.g. an
OpenLineage event's facets) is kept as is on both. Views over them are in ``views_lineage.sql``.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from .rows import Rows, add

TS = pa.timestamp("us")
COLUMN = pa.struct([("name", pa.string()), ("type", pa.string())])

TABLES: dict[str, pa.Schema] = {
    "log_dataset_versions": pa.schema([
        ("event_id", pa.string()), ("dataset", pa.string()), ("version", pa.string()), ("uri", pa.string()),
        ("columns", pa.list_(COLUMN)), ("row_count", pa.int64()), ("size_bytes", pa.int64()),
        ("media_type", pa.string()), ("description", pa.string()), ("tags", pa.map_(pa.string(), pa.string())),
        ("logged_at", TS), ("actor", pa.string()),
        ("facets", pa.string()),  # added with OpenLineage ingest: last, as ALTER TABLE adds it
    ]),
    "log_lineage": pa.schema([
        ("event_id", pa.string()), ("src", pa.string()), ("relation", pa.string()), ("dst", pa.string()),
        ("role", pa.string()), ("transform", pa.string()), ("code_ref", pa.string()), ("recorded_at", TS),
        ("actor", pa.string()),
        ("facets", pa.string()),  # added with OpenLineage ingest: last, as ALTER TABLE adds it
    ]),
}
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {}
VIEWS: tuple[str, ...] = ("datasets", "dataset_versions", "lineage_edges", "lineage_nodes")
VIEWS_SQL = "views_lineage.sql"


def _dataset_version_logged(r: dict, out: Rows) -> None:
    env = r["envelope"]
    at, actor = env["occurred_at"], env["actor"]["principal"]
    add(out, "log_dataset_versions", event_id=env["event_id"], dataset=r["dataset"], version=r["version"],
        uri=r["uri"], columns=[{"name": c["name"], "type": c["type"]} for c in r.get("columns", [])],
        row_count=r.get("row_count"), size_bytes=r["size_bytes"], media_type=r["media_type"],
        description=r.get("description"), tags=list(r.get("tags", {}).items()), logged_at=at, actor=actor,
        facets=r.get("facets"))
    node = f"dataset:{r['dataset']}@{r['version']}"
    for d in r.get("derived_from", []):
        add(out, "log_lineage", event_id=env["event_id"], src=f"dataset:{d['dataset']}@{d['version']}",
            relation="derived", dst=node, role=None, transform=d.get("transform"), code_ref=d.get("code_ref"),
            recorded_at=at, actor=actor, facets=None)


def _lineage_recorded(r: dict, out: Rows) -> None:
    env = r["envelope"]
    add(out, "log_lineage", event_id=env["event_id"], src=r["src"], relation=r["relation"], dst=r["dst"],
        role=r.get("role"), transform=r.get("transform"), code_ref=r.get("code_ref"),
        recorded_at=env["occurred_at"], actor=env["actor"]["principal"], facets=r.get("facets"))


PROJECTIONS: dict[str, Callable[[dict, Rows], None]] = {
    "DatasetVersionLogged": _dataset_version_logged,
    "LineageRecorded": _lineage_recorded,
}
