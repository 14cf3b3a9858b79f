"""Shared pieces of ``bench/api.py`` (stdlib only: imported from our venv and from the peers' venv).

The dataset both systems hold, the two requests with the same meaning on both sides, and the timing loop
(bounded in count and in time) that gives p50 / p99.
"""

from __future__ import annotations

import math
import statistics
import time

EXPERIMENT = "bench-api"
HISTORY_EXPERIMENT = "bench-api-history"
HISTORY_RUN = "history"
HISTORY_KEY = "curve"
PAGE = 100
MAX_POINTS = 2000
# the runs-table request: the first page of 100, filtered on a metric and a param, ordered by the metric
FILTER_MLFLOW = "metrics.auc > 0.5 and params.depth = '6'"
ORDER_MLFLOW = ["metrics.auc DESC"]
FILTER_MODELOG = "metrics.auc > 0.5 AND params.depth = 6"
ORDER_MODELOG = "metrics.auc DESC"
GOLDEN = (math.sqrt(5) - 1) / 2


class Dataset:
    """``runs`` runs in one experiment, each 5 params, 2 tags, 3 metrics (one point each: the latest
    value), plus one run in another experiment with a ``points``-point history of one metric."""

    def __init__(self, runs: int = 10_000, points: int = 1_000_000) -> None:
        self.runs, self.points = runs, points

    @staticmethod
    def name(r: int) -> str:
        return f"r{r:06d}"

    @staticmethod
    def auc(r: int) -> float:
        return (r * GOLDEN) % 1.0  # low-discrepancy in [0, 1), all distinct: an unambiguous order

    @staticmethod
    def params(r: int) -> dict[str, str]:
        return {"depth": str(2 + r % 10), "lr": f"{0.01 * (1 + r % 7):.2f}", "n_estimators": str(100 * (1 + r % 5)),
                "subsample": f"{0.5 + 0.1 * (r % 6):.1f}", "seed": str(r)}

    @staticmethod
    def tags(r: int) -> dict[str, str]:
        return {"team": f"team-{r % 4}", "source": "bench-api"}

    def metrics(self, r: int) -> dict[str, float]:
        a = self.auc(r)
        return {"auc": a, "loss": 1.0 - a, "accuracy": 0.5 + a / 2}

    @staticmethod
    def curve(step: int) -> float:
        return math.sin(step / 1000.0) + step * 1e-6

    def expected_page(self) -> list[str]:
        """Names of the runs-table page both systems must answer, in order."""
        hits = [r for r in range(self.runs) if self.auc(r) > 0.5 and 2 + r % 10 == 6]
        hits.sort(key=self.auc, reverse=True)
        return [self.name(r) for r in hits[:PAGE]]

    def expected_matches(self) -> int:
        return sum(1 for r in range(self.runs) if self.auc(r) > 0.5 and 2 + r % 10 == 6)

    def as_dict(self) -> dict:
        return {"runs": self.runs, "params_per_run": 5, "tags_per_run": 2, "metrics_per_run": 3,
                "history_points": self.points, "history_key": HISTORY_KEY, "matching_runs": self.expected_matches(),
                "page": PAGE}


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of ``values``."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * q / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def timed(fn, reps: int, budget_s: float, warmup: int = 3, min_reps: int = 3) -> dict:
    """``warmup`` untimed calls, then up to ``reps`` timed calls while the time spent stays under ``budget_s``
    (at least ``min_reps``). p50 / p99 / min / max in ms and what the last call returned (for checks)."""
    result = None
    t_start = time.perf_counter()
    for _ in range(warmup):
        result = fn()
        if time.perf_counter() - t_start > budget_s / 2:
            break
    times: list[float] = []
    t_start = time.perf_counter()
    while len(times) < reps:
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
        if len(times) >= min_reps and time.perf_counter() - t_start > budget_s:
            break
    return {"p50_ms": round(percentile(times, 50), 3), "p99_ms": round(percentile(times, 99), 3),
            "mean_ms": round(statistics.fmean(times), 3), "min_ms": round(min(times), 3),
            "max_ms": round(max(times), 3), "reps": len(times), "reps_asked": reps,
            "time_bounded": len(times) < reps, "result": result}
