"""The base tables: facts as the projection writes them (Arrow schemas; DDL is derived).

Users query the views in ``views.sql``; these tables are their input.
All times are UTC.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us")

TABLES: dict[str, pa.Schema] = {
    "log_events": pa.schema([
        ("event_id", pa.string()), ("event_type", pa.string()), ("occurred_at", TS), ("actor", pa.string()),
        ("actor_kind", pa.string()), ("source_host", pa.string()), ("source_pid", pa.int64()),
        ("source_program", pa.string()), ("sdk_version", pa.string()), ("entity_type", pa.string()),
        ("entity_key", pa.string()), ("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()),
        ("logged_at", TS), ("writer_schema", pa.string()),
        # the signature's key when it verified (decision 0015); NULL/false: unsigned
        ("verified", pa.bool_()), ("key_id", pa.string()),
    ]),
    "log_experiments": pa.schema([
        ("event_id", pa.string()), ("experiment", pa.string()), ("description", pa.string()),
        ("created_at", TS), ("actor", pa.string()),
    ]),
    "log_run_started": pa.schema([
        ("event_id", pa.string()), ("run_id", pa.string()), ("experiment", pa.string()), ("name", pa.string()),
        ("start_time", TS), ("actor", pa.string()), ("python_version", pa.string()),
        ("python_implementation", pa.string()), ("platform", pa.string()), ("hostname", pa.string()),
        ("cpu_count", pa.int32()), ("memory_bytes", pa.int64()), ("gpus", pa.list_(pa.string())),
        ("command", pa.list_(pa.string())), ("working_dir", pa.string()), ("git_commit", pa.string()),
        ("git_branch", pa.string()), ("git_dirty", pa.bool_()), ("git_remote", pa.string()),
        ("packages", pa.map_(pa.string(), pa.string())),
    ]),
    "log_params": pa.schema([
        ("event_id", pa.string()), ("run_id", pa.string()), ("key", pa.string()), ("value", pa.string()),
        ("value_type", pa.string()), ("logged_at", TS),
    ]),
    "log_metrics": pa.schema([
        ("event_id", pa.string()), ("run_id", pa.string()), ("key", pa.string()), ("value", pa.float64()),
        ("step", pa.int64()), ("timestamp", TS),
    ]),
    # one row per (run, key) per projected batch: the batch's latest point of that metric and its
    # min/max/count, written by the store with the points (latest_metrics aggregates these few rows
    # instead of every point; the as-of path derives them from the points instead, see AS_OF_SHADOWS)
    "log_metric_summaries": pa.schema([
        ("run_id", pa.string()), ("key", pa.string()), ("value", pa.float64()), ("step", pa.int64()),
        ("timestamp", TS), ("event_id", pa.string()), ("min_value", pa.float64()), ("max_value", pa.float64()),
        ("points", pa.int64()),
    ]),
    "log_tags": pa.schema([
        ("event_id", pa.string()), ("run_id", pa.string()), ("key", pa.string()), ("value", pa.string()),
        ("set_at", TS),
    ]),
    "log_artifacts": pa.schema([
        ("event_id", pa.string()), ("run_id", pa.string()), ("path", pa.string()), ("uri", pa.string()),
        ("sha256", pa.string()), ("size_bytes", pa.int64()), ("media_type", pa.string()), ("logged_at", TS),
        ("content_address", pa.string()),  # added with the artifact store: last, as ALTER TABLE adds it
    ]),
    "log_run_ended": pa.schema([
        ("event_id", pa.string()), ("run_id", pa.string()), ("status", pa.string()), ("end_time", TS),
        ("error", pa.string()), ("actor", pa.string()),
    ]),
    "log_dead_letters": pa.schema([
        ("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()), ("reason", pa.string()),
        ("detail", pa.string()), ("key", pa.binary()), ("value", pa.binary()), ("logged_at", TS),
    ]),
}

# summaries of the points in a relation ``{points}`` with log_metrics' columns (GROUP BY run_id, key)
METRIC_SUMMARY_SELECT = (
    'SELECT run_id, key, arg_max(value, (step, "timestamp", event_id)) AS value, max(step) AS step, '
    'arg_max("timestamp", (step, "timestamp", event_id)) AS "timestamp", '
    'arg_max(event_id, (step, "timestamp", event_id)) AS event_id, '
    'min(value) FILTER (WHERE NOT isnan(value)) AS min_value, max(value) FILTER (WHERE NOT isnan(value)) AS max_value, '
    'count(*) AS points FROM {points} GROUP BY run_id, key')

# base tables derived from another one as it is written: (source table, SELECT over "{points}")
DERIVED = {"log_metric_summaries": ("log_metrics", METRIC_SUMMARY_SELECT)}

# how ``as_of`` shadows a derived table: from its source's rows up to the instant, one summary per point
AS_OF_SHADOWS = {
    "log_metric_summaries": 'SELECT run_id, key, value, step, "timestamp", event_id, '
                            'CASE WHEN isnan(value) THEN NULL ELSE value END AS min_value, '
                            'CASE WHEN isnan(value) THEN NULL ELSE value END AS max_value, '
                            '1::BIGINT AS points FROM log_metrics',
}

PRIMARY_KEYS = {
    "log_events": ("event_id",),
    "log_dead_letters": ("topic", "partition", "offset"),
}

# Further event families declare their base tables in their own module.
from . import access, keys, lineage, monitoring, privacy, registry  # noqa: E402  (registry first: lineage views read registry views)

for _family in (registry, lineage, monitoring, access, keys, privacy):
    assert not TABLES.keys() & _family.TABLES.keys(), "a base table is declared twice"
    TABLES.update(_family.TABLES)
    PRIMARY_KEYS.update(getattr(_family, "PRIMARY_KEYS", {}))

DUCK_TYPES = {
    pa.map_(pa.string(), pa.float64()): "MAP(VARCHAR, DOUBLE)",
    pa.map_(pa.string(), pa.int64()): "MAP(VARCHAR, BIGINT)",
    pa.list_(pa.float64()): "DOUBLE[]",
    pa.list_(pa.int64()): "BIGINT[]",
    pa.list_(pa.struct([("name", pa.string()), ("type", pa.string())])): "STRUCT(name VARCHAR, type VARCHAR)[]",
    pa.string(): "VARCHAR", pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN", TS: "TIMESTAMP", pa.binary(): "BLOB",
    pa.list_(pa.string()): "VARCHAR[]", pa.map_(pa.string(), pa.string()): "MAP(VARCHAR, VARCHAR)",
}


def ddl(table: str) -> str:
    schema = TABLES[table]
    cols = [f'"{f.name}" {DUCK_TYPES[f.type]}' for f in schema]
    pk = PRIMARY_KEYS.get(table)
    if pk:
        cols.append("PRIMARY KEY (" + ", ".join(f'"{c}"' for c in pk) + ")")
    return f"CREATE TABLE IF NOT EXISTS {table} (" + ", ".join(cols) + ")"


def to_arrow(table: str, columns: dict[str, list]) -> pa.Table:
    """The rows of ``table`` in ``columns`` (``rows.Columns``: lists of values, then whole batches of arrays)."""
    schema = TABLES[table]
    batches = getattr(columns, "batches", ())
    parts = []
    if _len(columns) or not batches:
        parts.append(pa.Table.from_pydict({f.name: columns.get(f.name, [None] * _len(columns)) for f in schema},
                                          schema=schema))
    for batch in batches:
        n = len(next(iter(batch.values())))
        parts.append(pa.Table.from_arrays([_array(batch.get(f.name), f.type, n) for f in schema], schema=schema))
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts)


def _array(values, typ: pa.DataType, n: int) -> pa.Array:
    if values is None:
        return pa.nulls(n, typ)
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values if values.type == typ else values.cast(typ)
    if typ == TS:  # int64 microseconds since the epoch: the same buffer, viewed as timestamps
        return pa.array(values, pa.int64()).view(TS)
    return pa.array(values, typ)


def _len(columns: dict[str, list]) -> int:
    return len(next(iter(columns.values()))) if columns else 0
