"""Prometheus metrics from the views: query results in, text exposition format 0.0.4 out. Pure.

``QUERIES`` are the read-only SQL statements the processor's ``GET /metrics`` runs (each on its own,
so one failing -- e.g. a view another family is still changing -- costs only its own metrics and
shows as ``modelog_metrics_query_error``); :func:`render` turns their rows, plus the high
watermarks the projector's consumer saw, into the exposition text. :func:`collect` glues the two
with any ``query(sql) -> rows`` callable.

Lag is ``high watermark - next projected offset`` per (topic, partition). Positions come from the
views' ``positions`` table (committed with each batch); high watermarks are the ones carried by
the projector's fetch responses (right on tansu, unlike ListOffsets), so lag is only reported for
partitions this processor has fetched.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Rows = list[dict[str, Any]]

QUERIES: dict[str, str] = {
    # each (model, deployment)'s latest window: one row per column and method
    "drift_columns": """
        WITH latest AS (SELECT model, deployment, max("window") AS "window" FROM drift_windows GROUP BY ALL)
        SELECT d.model, d.deployment, d."column", d.method, d.score, d.threshold, d.drift
        FROM drift_metrics d JOIN latest l ON d.model = l.model AND d.deployment = l.deployment
                                          AND d."window" = l."window"
        QUALIFY row_number() OVER (PARTITION BY d.model, d.deployment, d."column", d.method
                                   ORDER BY d.measured_at DESC) = 1""",
    "drift_windows": """
        SELECT model, deployment, "window", drift_share, dataset_drift FROM drift_windows
        QUALIFY row_number() OVER (PARTITION BY model, deployment ORDER BY "window" DESC, measured_at DESC) = 1""",
    "alert_open": """
        SELECT model, deployment, rule, max(CASE WHEN status = 'OPEN' THEN 1 ELSE 0 END) AS open
        FROM alert_incidents GROUP BY ALL""",
    "alert_changes": """
        SELECT model, deployment, rule, state, count(DISTINCT alert_id) AS n FROM alerts GROUP BY ALL""",
    "predictions": """
        SELECT model, deployment, sum(predictions) AS predictions, sum(dropped) AS dropped
        FROM prediction_rates GROUP BY ALL""",
    "events": "SELECT event_type, count(*) AS n FROM log_events GROUP BY ALL",
    "dead_letters": "SELECT reason, count(*) AS n FROM log_dead_letters GROUP BY ALL",
    "positions": 'SELECT topic, "partition", next_offset FROM positions',
}


@dataclass
class Family:
    """One metric: name, type (gauge|counter), help, and samples (labels, value)."""

    name: str
    type: str
    help: str
    samples: list[tuple[dict[str, Any], Any]] = field(default_factory=list)

    def add(self, value: Any, **labels: Any) -> None:
        if value is not None:
            self.samples.append((labels, value))


def escape_label(value: Any) -> str:
    """A label value as exposition text: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: Any) -> str:
    """Go ParseFloat-compatible: integers as such, NaN, +Inf, -Inf, bools as 1/0."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def exposition(families: Iterable[Family]) -> str:
    """The text of ``families``: HELP and TYPE for each, then its samples sorted by labels."""
    lines: list[str] = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {escape_help(fam.help)}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for labels, value in sorted(fam.samples, key=lambda s: [(k, str(v)) for k, v in s[0].items()]):
            text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
            lines.append(f"{fam.name}{{{text}}} {format_value(value)}" if text else f"{fam.name} {format_value(value)}")
    return "\n".join(lines) + "\n"


def lag(positions: Mapping[tuple[str, int], int], highwaters: Mapping[tuple[str, int], int]) -> dict:
    """Records not yet projected per (topic, partition) with a known high watermark (never negative:
    the high watermark may be a moment older than the position)."""
    return {tp: max(0, hw - positions.get(tp, 0)) for tp, hw in highwaters.items()}


def render(results: Mapping[str, Rows], highwaters: Mapping[tuple[str, int], int] | None = None,
           errors: Iterable[str] = ()) -> str:
    """The exposition text from query results (``QUERIES`` name -> rows as dicts) and high watermarks.

    A missing result renders its families without samples.
    """
    def rows(name: str) -> Rows:
        return list(results.get(name) or [])

    score = Family("modelog_drift_score", "gauge",
                   "Drift score of a column in the latest window (statistic of `method`: a p-value for ks and "
                   "chisquare, a distance otherwise)")
    threshold = Family("modelog_drift_threshold", "gauge", "Threshold the drift score is compared with")
    detected = Family("modelog_drift_detected", "gauge", "1 if the column drifted in the latest window, else 0")
    for r in rows("drift_columns"):
        labels = dict(model=r["model"], deployment=r["deployment"], column=r["column"], method=r["method"])
        score.add(r["score"], **labels)
        threshold.add(r["threshold"], **labels)
        detected.add(None if r["drift"] is None else int(bool(r["drift"])), **labels)

    share = Family("modelog_dataset_drift_share", "gauge", "Share of drifted features in the latest window")
    dataset = Family("modelog_dataset_drift", "gauge", "1 if the latest window drifted as a whole, else 0")
    window = Family("modelog_drift_window", "gauge", "Number of the latest measured drift window")
    for r in rows("drift_windows"):
        labels = dict(model=r["model"], deployment=r["deployment"])
        share.add(r["drift_share"], **labels)
        dataset.add(None if r["dataset_drift"] is None else int(bool(r["dataset_drift"])), **labels)
        window.add(r["window"], **labels)

    alert_open = Family("modelog_alert_open", "gauge", "1 while an incident of the rule is open (RAISED, not "
                                                       "RESOLVED), else 0")
    for r in rows("alert_open"):
        alert_open.add(int(r["open"]), model=r["model"], deployment=r["deployment"], rule=r["rule"])
    changes = Family("modelog_alerts_total", "counter", "Incidents that reached the state (RAISED, RESOLVED)")
    for r in rows("alert_changes"):
        changes.add(int(r["n"]), model=r["model"], deployment=r["deployment"], rule=r["rule"], state=r["state"])

    predictions = Family("modelog_predictions_total", "counter",
                         "Predictions logged (rate() gives the prediction rate)")
    dropped = Family("modelog_predictions_dropped_total", "counter",
                     "Predictions the clients dropped because their buffer was full")
    for r in rows("predictions"):
        labels = dict(model=r["model"], deployment=r["deployment"])
        predictions.add(int(r["predictions"] or 0), **labels)
        dropped.add(int(r["dropped"] or 0), **labels)

    events = Family("modelog_events_projected_total", "counter", "Events applied to the views, by event type")
    for r in rows("events"):
        events.add(int(r["n"]), event_type=r["event_type"])
    dead = Family("modelog_dead_letters_total", "counter", "Records the projector dead-lettered, by reason")
    for r in rows("dead_letters"):
        dead.add(int(r["n"]), reason=r["reason"])

    positions = {(r["topic"], int(r["partition"])): int(r["next_offset"]) for r in rows("positions")}
    highwaters = dict(highwaters or {})
    position = Family("modelog_processor_next_offset", "gauge", "Next offset the views will project, per partition")
    for (t, p), o in positions.items():
        position.add(o, topic=t, partition=p)
    high = Family("modelog_processor_high_watermark", "gauge",
                  "High watermark of the partition from the projector's last fetch response")
    lag_f = Family("modelog_processor_lag_records", "gauge",
                   "Records on the log not yet in the views: high watermark - next projected offset")
    for (t, p), hw in highwaters.items():
        high.add(hw, topic=t, partition=p)
    for (t, p), n in lag(positions, highwaters).items():
        lag_f.add(n, topic=t, partition=p)

    failed = Family("modelog_metrics_query_error", "gauge", "1 if the query behind some metrics failed on this scrape")
    errors = set(errors)
    for name in QUERIES:
        failed.add(int(name in errors), query=name)

    return exposition([score, threshold, detected, share, dataset, window, alert_open, changes, predictions,
                       dropped, events, dead, position, high, lag_f, failed])


def collect(query: Callable[[str], Rows], highwaters: Mapping[tuple[str, int], int] | None = None) -> str:
    """Run every query with ``query`` (one failing does not stop the others) and render the text."""
    results: dict[str, Rows] = {}
    errors: list[str] = []
    for name, sql in QUERIES.items():
        try:
            results[name] = query(sql)
        except Exception as exc:  # noqa: BLE001 -- reported as modelog_metrics_query_error, and logged
            log.warning("metrics query %s failed: %s: %s", name, type(exc).__name__, exc)
            errors.append(name)
    return render(results, highwaters, errors)
