"""Current-state tables: the latest state per run and key, kept by the projector with every batch.

The views ``runs``, ``params``, ``tags`` and ``latest_metrics`` answer "what is the state now": the first
RunStarted and RunEnded of a run, the first value of a param, the latest value of a tag, the latest point of
a metric. Computed at query time from the facts, that costs a window or a group over every row ever
logged, on every query -- the runs table of a UI at 10,000 runs paid ~35 ms for it. Instead the store
keeps one row per run (per run and key) in a table of its own, updated in the same transaction as the
facts (decision 0014).

Each table is defined by a *merge*: a GROUP BY over rows with the table's own columns whose result does not
depend on the order the rows arrive in (first by event id, latest by (set_at, event id), min, max, sum).
So the table after a batch is the merge of its current rows for the batch's keys with the batch's rows,
and the same merge over the whole base table gives the same answer -- that full form (``definition_sql``)
is what a rebuild converges to, what ``as_of`` and the lake use in place of the table, and what fills the
table of a views file written before it existed.

Pure: SQL text only; the store executes it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Current:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, DuckDB type)
    key: tuple[str, ...]                  # its primary key
    sources: tuple[tuple[str, str], ...]  # (base table, its rows in this table's columns over a relation ``{rel}``)
    merge_sql: str                        # GROUP BY key over ``{src}`` (rows with this table's columns)
    full: str | None = None               # the facts in this table's columns, where not the union of ``sources``

    def batch_sql(self, table: str) -> str:
        """The rows a batch of ``table`` (the relation ``_batch``) contributes, in this table's columns."""
        return dict(self.sources)[table].format(rel="_batch")

    @property
    def full_sql(self) -> str:
        """Every fact's rows in this table's columns, from the base tables."""
        if self.full:
            return self.full
        return " UNION ALL BY NAME ".join(f"({select.format(rel=base)})" for base, select in self.sources)


def _cols(text: str) -> tuple[tuple[str, str], ...]:
    return tuple(tuple(part.strip().split(" ", 1)) for part in text.split(","))  # type: ignore[misc]


def _names(cols: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(c for c, _ in cols)


def _pick(columns: tuple[tuple[str, str], ...], order: str, how: str = "arg_min_null") -> str:
    """Of every column, the value of the row with the least (``arg_min_null``) or greatest ``order``: NULL
    values count (the first event's NULL error stays NULL), rows without an ``order`` do not."""
    return ", ".join(f"{how}({c}, {order}) AS {c}" for c, _ in columns)


_STARTED = _cols("experiment VARCHAR, name VARCHAR, start_time TIMESTAMP, actor VARCHAR, python_version VARCHAR, "
                 "platform VARCHAR, hostname VARCHAR, cpu_count INTEGER, memory_bytes BIGINT, gpus VARCHAR[], "
                 "command VARCHAR[], git_commit VARCHAR, git_branch VARCHAR, git_dirty BOOLEAN, package_count BIGINT")
_ENDED = _cols("status VARCHAR, end_time TIMESTAMP, error VARCHAR, ended_by VARCHAR")
_PARAMS = _cols("value VARCHAR, value_type VARCHAR, logged_at TIMESTAMP")
_TAGS = _cols("value VARCHAR, set_at TIMESTAMP")
_METRICS = _cols('value DOUBLE, step BIGINT, "timestamp" TIMESTAMP, event_id VARCHAR')
_METRIC_ORDER = '(step, "timestamp", event_id)'
_STARTED_SELECT = _names(_STARTED).replace("package_count", "cardinality(packages) AS package_count")

CURRENT: dict[str, Current] = {c.name: c for c in (
    # one row per run: its first RunStarted and its first RunEnded (by event id); a run whose RunEnded
    # came first has NULL started_event_id until its RunStarted arrives
    Current(
        name="cur_runs",
        columns=(("run_id", "VARCHAR"), ("started_event_id", "VARCHAR")) + _STARTED
                + (("ended_event_id", "VARCHAR"),) + _ENDED,
        key=("run_id",),
        sources=(
            ("log_run_started", f"SELECT run_id, event_id AS started_event_id, {_STARTED_SELECT} FROM {{rel}}"),
            ("log_run_ended", "SELECT run_id, event_id AS ended_event_id, status, end_time, error, actor AS ended_by "
                              "FROM {rel}"),
        ),
        merge_sql=(f"SELECT run_id, min(started_event_id) AS started_event_id, {_pick(_STARTED, 'started_event_id')}, "
                   f"min(ended_event_id) AS ended_event_id, {_pick(_ENDED, 'ended_event_id')} "
                   "FROM {src} GROUP BY run_id"),
    ),
    # one row per (run, key): the first value (by event id)
    Current(
        name="cur_params",
        columns=(("run_id", "VARCHAR"), ("key", "VARCHAR"), ("event_id", "VARCHAR")) + _PARAMS,
        key=("run_id", "key"),
        sources=(("log_params", "SELECT run_id, key, event_id, value, value_type, logged_at FROM {rel}"),),
        merge_sql=f"SELECT run_id, key, min(event_id) AS event_id, {_pick(_PARAMS, 'event_id')} FROM {{src}} "
                  "GROUP BY run_id, key",
    ),
    # one row per (run, key): the latest value by event time, then event id
    Current(
        name="cur_tags",
        columns=(("run_id", "VARCHAR"), ("key", "VARCHAR"), ("event_id", "VARCHAR")) + _TAGS,
        key=("run_id", "key"),
        sources=(("log_tags", "SELECT run_id, key, event_id, value, set_at FROM {rel}"),),
        merge_sql=("SELECT run_id, key, arg_max_null(event_id, (set_at, event_id)) AS event_id, "
                   f"{_pick(_TAGS, '(set_at, event_id)', 'arg_max_null')} FROM {{src}} GROUP BY run_id, key"),
    ),
    # one row per (run, key): the point with the highest (step, timestamp, event id), min/max (NaN
    # ignored) and the number of points; a batch contributes its summaries (tables.METRIC_SUMMARY_SELECT)
    Current(
        name="cur_latest_metrics",
        columns=(("run_id", "VARCHAR"), ("key", "VARCHAR")) + _METRICS
                + _cols("min_value DOUBLE, max_value DOUBLE, points BIGINT"),
        key=("run_id", "key"),
        # from the batch's summaries (written to log_metric_summaries first): the points are summarised once
        sources=(("log_metric_summaries", f"SELECT run_id, key, {_names(_METRICS)}, min_value, max_value, points "
                                          "FROM {rel}"),),
        merge_sql=(f"SELECT run_id, key, {_pick(_METRICS, _METRIC_ORDER, 'arg_max_null')}, "
                   "min(min_value) AS min_value, max(max_value) AS max_value, CAST(sum(points) AS BIGINT) AS points "
                   "FROM {src} GROUP BY run_id, key"),
    ),
)}

CURRENT_FROM: dict[str, list[Current]] = {}  # base table -> the current tables its new rows update
for _c in CURRENT.values():
    for _base, _ in _c.sources:
        CURRENT_FROM.setdefault(_base, []).append(_c)


def ddl(c: Current) -> str:
    cols = ", ".join(f"{n} {t}" for n, t in c.columns)
    return f"CREATE TABLE IF NOT EXISTS {c.name} ({cols}, PRIMARY KEY ({', '.join(c.key)}))"


def definition_sql(c: Current) -> str:
    """The table's whole content from the base tables alone (rebuild, ``as_of``, the lake, backfill)."""
    return c.merge_sql.format(src=f"({c.full_sql})")


def merged_batch_sql(c: Current, table: str) -> str:
    """The new rows of the batch's keys: the merge of their current rows with the rows a batch of ``table``
    (relation ``_batch``) contributes."""
    keys = ", ".join(c.key)
    batch = c.batch_sql(table)
    return c.merge_sql.format(src=(
        f"(({batch}) UNION ALL BY NAME (SELECT t.* FROM {c.name} t SEMI JOIN ({batch}) b USING ({keys})))"))


def upsert_sql(c: Current, relation: str) -> str:
    """Write ``relation`` (rows with the table's columns, one per key) over the table's rows of those keys."""
    updates = ", ".join(f"{n} = excluded.{n}" for n, _ in c.columns if n not in c.key)
    return f"INSERT INTO {c.name} BY NAME SELECT * FROM {relation} ON CONFLICT DO UPDATE SET {updates}"


def views_sql(temp: bool = False) -> str:
    """Each current table as a view over the base tables (for a reader that has only the facts)."""
    kind = "TEMP VIEW" if temp else "VIEW"
    return "\n".join(f"CREATE OR REPLACE {kind} {c.name} AS {definition_sql(c)};" for c in CURRENT.values())
