"""Event -> rows. Pure: imports neither faust nor duckdb (Arrow arrays hold a columnar event's rows).

``project(event, position, out)`` appends the rows one decoded, validated event
contributes to the base tables, column by column (``out[table][column]``), so
a batch of thousands of metric points becomes a few Arrow columns. Dispatch is
by event type through ``PROJECTIONS``.

Base tables are facts only; current state (latest tag, run status, ...) is
derived by the views in ``views.sql``.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from modelog.wire import metric_columns

from .rows import DeadLetter, RawRecord, Rows, add as _add, new_rows

__all__ = ["DeadLetter", "RawRecord", "Rows", "new_rows", "project", "dead_letter_row", "PROJECTIONS"]


def project_envelope(record: dict, position: RawRecord, writer_id: str, out: Rows) -> None:
    env = record["envelope"]
    _add(
        out, "log_events",
        event_id=env["event_id"], event_type=env["event_type"], occurred_at=env["occurred_at"],
        actor=env["actor"]["principal"], actor_kind=env["actor"]["kind"],
        source_host=env["source"]["host"], source_pid=env["source"]["pid"],
        source_program=env["source"]["program"], sdk_version=env["source"]["sdk_version"],
        entity_type=env["entity"]["type"], entity_key=env["entity"]["key"],
        topic=position.topic, partition=position.partition, offset=position.offset,
        logged_at=None if position.timestamp_ms is None else position.timestamp_ms * 1000,
        writer_schema=writer_id,
    )


def _experiment_created(r: dict, out: Rows) -> None:
    env = r["envelope"]
    _add(out, "log_experiments", event_id=env["event_id"], experiment=r["experiment"],
         description=r.get("description"), created_at=env["occurred_at"], actor=env["actor"]["principal"])


def _run_started(r: dict, out: Rows) -> None:
    env = r["envelope"]
    e = r["environment"]
    _add(
        out, "log_run_started",
        event_id=env["event_id"], run_id=r["run_id"], experiment=r["experiment"], name=r["name"],
        start_time=r["start_time"], actor=env["actor"]["principal"],
        python_version=e["python_version"], python_implementation=e["python_implementation"],
        platform=e["platform"], hostname=e["hostname"], cpu_count=e["cpu_count"],
        memory_bytes=e.get("memory_bytes"), gpus=list(e.get("gpus", [])), command=list(e.get("command", [])),
        working_dir=e["working_dir"], git_commit=e.get("git_commit"), git_branch=e.get("git_branch"),
        git_dirty=e.get("git_dirty"), git_remote=e.get("git_remote"),
        packages=list(e.get("packages", {}).items()),
    )
    for k, v in r.get("tags", {}).items():
        _add(out, "log_tags", event_id=env["event_id"], run_id=r["run_id"], key=k, value=v,
             set_at=env["occurred_at"])


def _params_logged(r: dict, out: Rows) -> None:
    env = r["envelope"]
    cols = out["log_params"]
    for p in r["params"]:
        cols["event_id"].append(env["event_id"])
        cols["run_id"].append(r["run_id"])
        cols["key"].append(p["key"])
        cols["value"].append(p["value"])
        cols["value_type"].append(p.get("value_type", "str"))
        cols["logged_at"].append(env["occurred_at"])


def _metrics_logged(r: dict, out: Rows) -> None:
    cols = out["log_metrics"]
    columns = r.get("columns")
    if columns is not None:  # the columnar form (decision 0021): Arrow arrays over the event's own buffers
        a = metric_columns.decode(columns)
        n = a.points
        cols.add_batch(event_id=pa.repeat(pa.scalar(r["envelope"]["event_id"], pa.string()), n),
                       run_id=pa.repeat(pa.scalar(r["run_id"], pa.string()), n),
                       key=pa.array(a.keys, pa.string()).take(pa.array(a.key_index)),
                       value=a.values, step=a.steps, timestamp=a.timestamps)
        return
    points = r["points"]
    n = len(points)
    cols["event_id"].extend([r["envelope"]["event_id"]] * n)
    cols["run_id"].extend([r["run_id"]] * n)
    cols["key"].extend([p["key"] for p in points])
    cols["value"].extend([p["value"] for p in points])
    cols["step"].extend([p["step"] for p in points])
    cols["timestamp"].extend([p["timestamp"] for p in points])


def _tags_set(r: dict, out: Rows) -> None:
    env = r["envelope"]
    for k, v in r["tags"].items():
        _add(out, "log_tags", event_id=env["event_id"], run_id=r["run_id"], key=k, value=v,
             set_at=env["occurred_at"])


def _artifact_logged(r: dict, out: Rows) -> None:
    env = r["envelope"]
    _add(out, "log_artifacts", event_id=env["event_id"], run_id=r["run_id"], path=r["path"], uri=r["uri"],
         sha256=r["sha256"], size_bytes=r["size_bytes"], media_type=r["media_type"], logged_at=env["occurred_at"],
         content_address=r.get("content_address"))


def _run_ended(r: dict, out: Rows) -> None:
    env = r["envelope"]
    _add(out, "log_run_ended", event_id=env["event_id"], run_id=r["run_id"], status=r["status"],
         end_time=r["end_time"], error=r.get("error"), actor=env["actor"]["principal"])


PROJECTIONS: dict[str, Callable[[dict, Rows], None]] = {
    "ExperimentCreated": _experiment_created,
    "RunStarted": _run_started,
    "ParamsLogged": _params_logged,
    "MetricsLogged": _metrics_logged,
    "TagsSet": _tags_set,
    "ArtifactLogged": _artifact_logged,
    "RunEnded": _run_ended,
}

# Further event families register their projections here (one module per family).
from . import access, keys, lineage, monitoring, privacy, registry  # noqa: E402  (registry first: lineage views read registry views)

for _family in (registry, lineage, monitoring, access, keys, privacy):
    overlap = PROJECTIONS.keys() & _family.PROJECTIONS.keys()
    assert not overlap, f"event types projected twice: {overlap}"
    PROJECTIONS.update(_family.PROJECTIONS)


def project(event_type: str, record: dict, position: RawRecord, writer_id: str, out: Rows) -> None:
    """Append the rows of one event (its audit row plus its facts) to ``out``."""
    project_envelope(record, position, writer_id, out)
    PROJECTIONS[event_type](record, out)


def dead_letter_row(dl: DeadLetter, out: Rows) -> None:
    rec = dl.record
    _add(out, "log_dead_letters", topic=rec.topic, partition=rec.partition, offset=rec.offset,
         reason=dl.reason, detail=dl.detail[:4000], key=rec.key, value=rec.value,
         logged_at=None if rec.timestamp_ms is None else rec.timestamp_ms * 1000)
