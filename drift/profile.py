"""Reference profiles: what the drift processor compares production windows with. Pure (pandas, numpy).

A profile holds, per column, exactly what the window statistics need:

* numeric (``NUM``, ``INT``): the count of finite values, missing count (NaN, None, +-inf), unique
  count, mean, population std, the inner quantile bin edges (0.1 ... 0.9, unique) with the exact
  reference count per bin (so PSI and Jensen-Shannon are exact), value counts when there are at
  most 1000 distinct values (chi-square, z-test), and a uniform random sample of at most
  ``sample_size`` values -- the whole column when it is smaller -- for KS and Wasserstein;
* categorical (``CAT``): exact value counts (values as text).

With a reference of at most ``sample_size`` rows every window statistic equals
``modelog.drift.compare`` on the same data (tested); above it, KS and Wasserstein use the sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from modelog.drift import stats as ds
from modelog.wire.errors import ValidationError

SAMPLE_SIZE = 10_000
MAX_VALUE_COUNTS = 1000
ROLES = ("FEATURE", "PREDICTION", "LABEL")


def value_text(v: Any) -> str:
    """The text a value is counted under (numbers: repr of the float, so 1 and 1.0 agree)."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, float, np.integer, np.floating)):
        return repr(float(v))
    return str(v)


def _kind_of(series: pd.Series, given: str | None) -> str:
    if given is not None:
        kind = given.upper()
        if kind not in ("NUM", "INT", "CAT"):
            raise ValidationError(f"kinds[{series.name!r}]", given, "must be one of num, int, cat")
        return kind
    from modelog.drift import _dtype_kind

    kind = _dtype_kind(series)
    if kind is None:
        raise ValidationError(f"kinds[{series.name!r}]", str(series.dtype),
                              "no kind is inferred for datetime-like columns; pass kinds={column: 'cat'}")
    return kind.upper()


def profile_column(series: pd.Series, kind: str, role: str = "FEATURE", *, sample_size: int = SAMPLE_SIZE,
                   seed: int = 0) -> dict[str, Any]:
    """The ColumnProfile record of one column (see schemas/modelog.events.ReferenceProfileLogged.avsc)."""
    out: dict[str, Any] = {"name": str(series.name), "kind": kind, "role": role, "mean": None, "std": None,
                           "edges": [], "bin_counts": [], "sample": [], "categories": {}}
    if kind == "CAT":
        present = series[series.notna()]
        counts = present.map(value_text).value_counts(sort=False)
        out.update(count=int(present.size), missing=int(series.size - present.size), unique=int(counts.size),
                   categories={str(k): int(v) for k, v in counts.items()})
        return out
    from modelog.drift import _as_float

    values, _ = _as_float(series, series.name, "reference", kind.lower())
    values = np.sort(values)
    out.update(count=int(values.size), missing=int(series.size - values.size))
    uniques, counts = np.unique(values, return_counts=True)
    out["unique"] = int(uniques.size)
    if values.size:
        out["mean"] = float(values.mean())
        out["std"] = float(values.std())
        edges = ds.quantile_edges(values)
        out["edges"] = edges.tolist()
        out["bin_counts"] = ds.bin_counts(values, edges, is_sorted=True).tolist()
    if uniques.size <= MAX_VALUE_COUNTS:
        out["categories"] = {value_text(u): int(c) for u, c in zip(uniques, counts)}
    if values.size <= sample_size:
        out["sample"] = values.tolist()
    else:
        rng = np.random.default_rng(seed)
        out["sample"] = np.sort(rng.choice(values, size=sample_size, replace=False)).tolist()
    return out


def profile_frame(df: pd.DataFrame, *, kinds: Mapping[str, str] | None = None, prediction: str | None = None,
                  label: str | None = None, sample_size: int = SAMPLE_SIZE, seed: int = 0) -> list[dict[str, Any]]:
    """Profiles of every column of ``df``; ``prediction`` and ``label`` name those columns' roles."""
    if not isinstance(df, pd.DataFrame):
        raise ValidationError("reference", type(df).__name__, "must be a pandas DataFrame")
    if df.empty:
        raise ValidationError("reference", "empty DataFrame", "must have at least one row")
    kinds = dict(kinds or {})
    for field, col in (("prediction", prediction), ("label", label)):
        if col is not None and col not in df.columns:
            raise ValidationError(field, col, "must name a column of the reference DataFrame")
    unknown = [k for k in kinds if k not in df.columns]
    if unknown:
        raise ValidationError(f"kinds[{unknown[0]!r}]", unknown[0], "names no column of the reference DataFrame")
    out = []
    for name in df.columns:
        role = "PREDICTION" if name == prediction else "LABEL" if name == label else "FEATURE"
        series = df[name].rename(str(name))
        out.append(profile_column(series, _kind_of(series, kinds.get(name)), role, sample_size=sample_size,
                                  seed=seed))
    return out
