"""Evidently's side of bench/drift.py; runs in bench/.venv-evidently (pandas < 3), not in the project venv.

    bench/.venv-evidently/bin/python bench/_evidently_runner.py --spec SPEC.json --out OUT.json

SPEC.json (written by bench/drift.py): {"reference": parquet path, "current": parquet path,
"numerical": [...], "categorical": [...], "repeat": N, "warmup_rows": M, "variants": [...]}.

Loads both parquet files (not timed), then for each variant runs one warm-up on the first
``warmup_rows`` rows (imports, lazy initialisation; not timed) and ``repeat`` timed runs on
the full frames, and writes OUT.json with the timings and, from the last timed run, each
column's method, score, threshold and verdict as Evidently reports them. Variants:

- "preset": ``evidently.Report([evidently.presets.DataDriftPreset()], include_tests=True)``
  over ``evidently.Dataset.from_pandas(..., data_definition=DataDefinition(numerical_columns=...,
  categorical_columns=...))``. Timed: building both Datasets + ``Report.run``. Per column:
  the ``ValueDrift`` metric's value (score), its resolved method and threshold, and the
  verdict of its "drift" test (FAIL = drift).
- "legacy": ``evidently.legacy.report.Report(metrics=[evidently.legacy.metric_preset.DataDriftPreset()])``
  with ``ColumnMapping(numerical_features=..., categorical_features=...)``. Timed:
  ``Report.run``. Per column: ``DataDriftTable``'s ``drift_by_columns``.
- "stattests": Evidently's per-column drift test alone: each column with +-inf replaced by
  NaN and NaN dropped (as ``get_one_column_drift`` does), the default stattest from
  ``get_stattest(reference, current, column_type, None)``, called with its default threshold.
  Timed: the loop over all columns. No report, no plots, no correlations.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from importlib.metadata import version

import numpy as np
import pandas as pd


def _method_names() -> dict[str, str]:
    """Evidently's stattest display name -> registered name ("Wasserstein distance (normed)" -> "wasserstein")."""
    from evidently.legacy.calculations.stattests.registry import _registered_stat_tests

    names: dict[str, set[str]] = {}
    for name, by_type in _registered_stat_tests.items():
        for stattest in by_type.values():
            names.setdefault(stattest.display_name, set()).add(name)
    return {display: next(iter(found)) for display, found in names.items() if len(found) == 1}


def _float(x) -> float | None:
    x = float(x)
    return None if np.isnan(x) else x


class Variant:
    """One way of running Evidently; ``prepare`` is untimed, ``run`` is timed, ``columns`` reads the result."""

    def __init__(self, numerical: list[str], categorical: list[str]):
        self.numerical, self.categorical = numerical, categorical
        self.display_to_name = _method_names()
        self.split: dict[str, float] = {}

    def method(self, display: str) -> str:
        return self.display_to_name.get(display, display)

    def dataset(self, out) -> dict:
        """Evidently's own dataset-level drift count, where the variant has one."""
        return {}


class Preset(Variant):
    api = "evidently.Report + evidently.presets.DataDriftPreset (DataDefinition)"

    def run(self, reference: pd.DataFrame, current: pd.DataFrame):
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        t0 = time.perf_counter()
        definition = DataDefinition(numerical_columns=self.numerical, categorical_columns=self.categorical)
        ref = Dataset.from_pandas(reference, data_definition=definition)
        cur = Dataset.from_pandas(current, data_definition=definition)
        t1 = time.perf_counter()
        snapshot = Report([DataDriftPreset()], include_tests=True).run(cur, ref)
        t2 = time.perf_counter()
        self.split = {"dataset_from_pandas_s": t1 - t0, "report_run_s": t2 - t1}
        return snapshot

    def columns(self, snapshot) -> dict[str, dict]:
        d = snapshot.dict()
        verdicts = {}
        for test in d["tests"]:
            params = test.get("metric_config", {}).get("params", {})
            if params.get("type") == "evidently:metric_v2:ValueDrift" and test.get("id") == "drift":
                verdicts[params["column"]] = test["status"]
        out = {}
        for metric in d["metrics"]:
            config = metric["config"]
            if config.get("type") != "evidently:metric_v2:ValueDrift":
                continue
            column = config["column"]
            status = verdicts.get(column)
            out[column] = {
                "method": self.method(config["method"]),
                "method_display": config["method"],
                "score": _float(metric["value"]),
                "threshold": config["threshold"],
                "drift": None if status is None else status == "FAIL",
                "test_status": status,
            }
        return out

    def dataset(self, snapshot) -> dict:
        for metric in snapshot.dict()["metrics"]:
            if metric["config"].get("type") == "evidently:metric_v2:DriftedColumnsCount":
                return {"metric": "DriftedColumnsCount", "drifted_columns": int(metric["value"]["count"])}
        return {}


class Legacy(Variant):
    api = "evidently.legacy.report.Report + evidently.legacy.metric_preset.DataDriftPreset (ColumnMapping)"

    def run(self, reference: pd.DataFrame, current: pd.DataFrame):
        from evidently.legacy.metric_preset import DataDriftPreset
        from evidently.legacy.pipeline.column_mapping import ColumnMapping
        from evidently.legacy.report import Report

        mapping = ColumnMapping(numerical_features=self.numerical, categorical_features=self.categorical)
        report = Report(metrics=[DataDriftPreset()])
        report.run(reference_data=reference, current_data=current, column_mapping=mapping)
        return report

    def columns(self, report) -> dict[str, dict]:
        d = report.as_dict()
        table = next(m["result"] for m in d["metrics"] if m["metric"] == "DataDriftTable")
        return {
            column: {
                "method": self.method(r["stattest_name"]),
                "method_display": r["stattest_name"],
                "score": _float(r["drift_score"]),
                "threshold": r["stattest_threshold"],
                "drift": bool(r["drift_detected"]),
                "column_type": r["column_type"],
            }
            for column, r in table["drift_by_columns"].items()
        }

    def dataset(self, report) -> dict:
        d = report.as_dict()
        result = next(m["result"] for m in d["metrics"] if m["metric"] == "DatasetDriftMetric")
        return {"metric": "DatasetDriftMetric", "drifted_columns": int(result["number_of_drifted_columns"])}


class Stattests(Variant):
    api = "evidently.legacy.calculations.stattests.get_stattest(...) per column (no report)"

    def run(self, reference: pd.DataFrame, current: pd.DataFrame):
        from evidently.legacy.calculations.stattests import get_stattest
        from evidently.legacy.core import ColumnType

        out = {}
        kinds = [(c, ColumnType.Numerical) for c in self.numerical] + [(c, ColumnType.Categorical) for c in self.categorical]
        for column, column_type in kinds:
            ref = reference[column].replace([-np.inf, np.inf], np.nan).dropna()
            cur = current[column].replace([-np.inf, np.inf], np.nan).dropna()
            stattest = get_stattest(ref, cur, column_type, None)
            result = stattest(ref, cur, column_type, None)
            out[column] = (stattest, result)
        return out

    def columns(self, out) -> dict[str, dict]:
        return {
            column: {
                "method": stattest.name,
                "method_display": stattest.display_name,
                "score": _float(result.drift_score),
                "threshold": result.actual_threshold,
                "drift": bool(result.drifted),
            }
            for column, (stattest, result) in out.items()
        }


VARIANTS = {"preset": Preset, "legacy": Legacy, "stattests": Stattests}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with open(args.spec) as f:
        spec = json.load(f)
    reference = pd.read_parquet(spec["reference"])
    current = pd.read_parquet(spec["current"])
    warm = spec["warmup_rows"]
    result = {
        "versions": {p: version(p) for p in ("evidently", "pandas", "numpy", "scipy", "pyarrow")},
        "python": sys.version.split()[0],
        "dtypes": {c: str(t) for c, t in reference.dtypes.items()},
        "variants": {},
    }
    for name in spec["variants"]:
        variant = VARIANTS[name](spec["numerical"], spec["categorical"])
        caught: dict[str, int] = {}
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            variant.run(reference.head(warm), current.head(warm))  # warm-up, not timed
            seen.clear()
            timings, splits, out = [], [], None
            for _ in range(spec["repeat"]):
                t0 = time.perf_counter()
                out = variant.run(reference, current)
                timings.append(time.perf_counter() - t0)
                splits.append(dict(variant.split))
                print(f"  evidently {name}: {timings[-1]:.2f} s", file=sys.stderr, flush=True)
            for w in seen:
                key = f"{w.category.__name__}: {w.message} ({w.filename.rsplit('site-packages/', 1)[-1]}:{w.lineno})"
                caught[key] = caught.get(key, 0) + 1
        result["variants"][name] = {
            "api": variant.api,
            "timings_s": timings,
            "median_s": statistics.median(timings),
            "splits": splits,
            "warnings": caught,
            "columns": variant.columns(out),
            "dataset": variant.dataset(out),
        }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
