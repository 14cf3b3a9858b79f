"""Server-side bucketing of metric histories: at most N buckets per run, spikes kept.

    history_query(run_ids, key, max_points, x="step", min_step=None, max_step=None) -> (sql, params)

For ``GET /api/v1/runs/{run_id}/metrics/{key}?max_points=N`` and ``GET /api/v1/metrics?run_id=..&key=..``.
Over the ``metrics`` view (run_id, key, value, step, timestamp), per run:

* a run with at most ``max_points`` points (in the step range asked for) comes back point by point:
  one row per point, ``bucket`` its rank (0, 1, ...) in x order;
* a longer run is cut into ``max_points`` equal-width buckets over ITS OWN x range [lo, hi] (x is the step,
  or the timestamp in microseconds when ``x="time"``): bucket = floor((x - lo) * N / (hi - lo + 1)), exact
  integer arithmetic, so 0 <= bucket < N; empty buckets are absent (gaps stay gaps). One GROUP BY gives,
  per bucket, the first and last step and time, the last value, min, max, the number of points and NaNs.

Columns, ordered by run_id then bucket:
``run_id, bucket, first_step, last_step, first_time, last_time, value, min_value, max_value, points, nan_count``

* ``value`` is the bucket's last point: the highest step, the latest timestamp on ties (with
  ``x="time"``: the latest timestamp, then the highest step) -- the same rule as ``latest_metrics``; it
  may be NaN or +-inf, as logged.
* ``min_value`` / ``max_value`` ignore NaN (NULL when every point is NaN) and keep +-inf: an infinite
  spike is a spike. ``nan_count`` says how many NaNs the bucket held, so a chart can mark them.
* Zoom: ``min_step`` / ``max_step`` (inclusive) keep only points in that step range before bucketing, so
  a narrower range gets finer buckets.

Pure: SQL text and ``?`` parameters, no DuckDB import; nothing the caller passes reaches the SQL text.
"""

from __future__ import annotations

from typing import Any

from modelog.wire.errors import ValidationError

MAX_POINTS = 10_000
MAX_RUNS = 100
MAX_KEY = 250
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

COLUMNS = ("run_id", "bucket", "first_step", "last_step", "first_time", "last_time", "value", "min_value",
           "max_value", "points", "nan_count")

_X = {"step": ('p.step', 'p.step, p."timestamp"'),
      "time": ('epoch_us(p."timestamp")', 'p."timestamp", p.step')}


def _int(field: str, value: Any, low: int, high: int, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(field, value, f"must be an integer {low}..{high}")
    return value


def history_query(run_ids: list[str], key: str, max_points: int, x: str = "step",
                  min_step: int | None = None, max_step: int | None = None) -> tuple[str, list[Any]]:
    """The bucketed history of metric ``key`` for each of ``run_ids`` (see the module docstring).
    ``max_points`` 1..10000; ``x`` "step" or "time"; at most 100 runs. Raises ValidationError."""
    if isinstance(run_ids, str) or not isinstance(run_ids, (list, tuple)) or not run_ids:
        raise ValidationError("run_id", run_ids, "give at least one run id")
    runs = list(dict.fromkeys(run_ids))
    if len(runs) > MAX_RUNS:
        raise ValidationError("run_id", f"{len(runs)} run ids", f"at most {MAX_RUNS} runs at once")
    for r in runs:
        if not isinstance(r, str) or not r or len(r) > 64:
            raise ValidationError("run_id", r, "must be a run id (text, 1-64 characters)")
    if not isinstance(key, str) or not key or len(key) > MAX_KEY:
        raise ValidationError("key", key, f"must be a metric key (text, 1-{MAX_KEY} characters)")
    n = _int("max_points", max_points, 1, MAX_POINTS)
    if x not in _X:
        raise ValidationError("x", x, "must be 'step' or 'time'")
    lo = _int("min_step", min_step, INT64_MIN, INT64_MAX, optional=True)
    hi = _int("max_step", max_step, INT64_MIN, INT64_MAX, optional=True)
    if lo is not None and hi is not None and lo > hi:
        raise ValidationError("min_step", min_step, f"must not exceed max_step ({max_step})")

    x_expr, order = _X[x]
    params: list[Any] = [key, *runs]
    where = "p.key = CAST(? AS VARCHAR) AND p.run_id IN (" + ", ".join("CAST(? AS VARCHAR)" for _ in runs) + ")"
    if lo is not None:
        where += " AND p.step >= CAST(? AS BIGINT)"
        params.append(lo)
    if hi is not None:
        where += " AND p.step <= CAST(? AS BIGINT)"
        params.append(hi)
    params += [n, n, n]
    sql = f"""
WITH pts AS (
    SELECT p.run_id, p.step, p."timestamp", p.value, {x_expr} AS x FROM metrics p WHERE {where}
), span AS (
    SELECT run_id, min(x) AS lo, max(x) AS hi, count(*) AS n FROM pts GROUP BY run_id
), raw AS (
    SELECT p.run_id, row_number() OVER (PARTITION BY p.run_id ORDER BY {order}) - 1 AS bucket,
           p.step AS first_step, p.step AS last_step, p."timestamp" AS first_time, p."timestamp" AS last_time,
           p.value, CASE WHEN isnan(p.value) THEN NULL ELSE p.value END AS min_value,
           CASE WHEN isnan(p.value) THEN NULL ELSE p.value END AS max_value,
           CAST(1 AS BIGINT) AS points, CAST(isnan(p.value) AS BIGINT) AS nan_count
    FROM pts p JOIN span s ON s.run_id = p.run_id
    WHERE s.n <= CAST(? AS BIGINT)
), cut AS (
    SELECT p.run_id, p.step, p."timestamp", p.value,
           CAST((CAST(p.x AS HUGEINT) - s.lo) * CAST(? AS HUGEINT) // (CAST(s.hi AS HUGEINT) - s.lo + 1) AS BIGINT)
               AS bucket
    FROM pts p JOIN span s ON s.run_id = p.run_id
    WHERE s.n > CAST(? AS BIGINT)
)
SELECT run_id, bucket, first_step, last_step, first_time, last_time, value, min_value, max_value, points,
       nan_count
FROM raw
UNION ALL
SELECT p.run_id, p.bucket, min(p.step), max(p.step), min(p."timestamp"), max(p."timestamp"),
       arg_max(p.value, ({order})),
       min(p.value) FILTER (WHERE NOT isnan(p.value)), max(p.value) FILTER (WHERE NOT isnan(p.value)),
       count(*), count(*) FILTER (WHERE isnan(p.value))
FROM cut p
GROUP BY p.run_id, p.bucket
ORDER BY run_id, bucket"""
    return sql.strip(), params
