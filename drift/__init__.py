"""Offline data drift: compare a reference DataFrame with a current one, column by column.

    import modelog.drift

    report = modelog.drift.compare(train_df, live_df, kinds={"zip": "cat"})
    report[report.drift]            # the drifted columns, with the statistic that decided

One row per column with every statistic that applies to the column's kind, the method
chosen for it (Evidently's default rule unless overridden), its score, threshold and
verdict. docs/drift.md defines each statistic; the numeric core is ``modelog.drift.stats``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from modelog.drift import stats as ds
from modelog.wire.errors import ValidationError

__all__ = ["COLUMNS", "KINDS", "METHODS", "compare"]

KINDS = ("num", "int", "cat")
"""Column kinds: "num" numeric, "int" integer codes treated as numeric, "cat" categorical."""

METHODS = ("ks", "chisquare", "z", "wasserstein", "jensenshannon", "psi")
"""Drift methods: the first three are tests (score = p-value), the rest distances."""

COLUMNS = (
    "column",
    "kind",
    "n_ref",
    "n_cur",
    "missing_ref",
    "missing_cur",
    "ks_stat",
    "ks_p",
    "psi",
    "js",
    "wasserstein_norm",
    "chi2_p",
    "method",
    "score",
    "threshold",
    "drift",
)
"""The columns of the DataFrame :func:`compare` returns, in order."""

_FLOAT_COLUMNS = (
    "missing_ref",
    "missing_cur",
    "ks_stat",
    "ks_p",
    "psi",
    "js",
    "wasserstein_norm",
    "chi2_p",
    "score",
    "threshold",
)


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: Mapping[Hashable, str] | None = None,
    *,
    thresholds: Mapping[Hashable, float] | None = None,
    methods: Mapping[Hashable, str] | None = None,
) -> pd.DataFrame:
    """Drift statistics of every column of ``current`` against ``reference``.

    Arguments:
        reference, current: DataFrames with the same columns (order follows ``reference``).
        kinds: optional ``{column: "num" | "int" | "cat"}``; columns left out are inferred:
            bool -> "cat"; any other numeric dtype (integers included) -> "num"; object,
            string and category -> "cat". Datetime columns must be given a kind ("cat") or
            dropped. A side whose column is entirely missing does not vote; the other
            side's dtype decides.
        thresholds: optional ``{column: threshold}`` replacing the method's default
            (0.05 for the tests, 0.1 for the distances).
        methods: optional ``{column: method}``, one of ``METHODS``, replacing the default
            choice; "ks" and "wasserstein" need a numeric kind.

    Returns a DataFrame with ``COLUMNS``: ``n_ref``/``n_cur`` count non-missing values,
    ``missing_ref``/``missing_cur`` are missing shares (NaN, None, NA, NaT; also +-inf in
    numeric columns), statistics that do not apply to a kind (or cannot be computed because
    a sample is empty) are NaN, ``score`` is what the method decides on (a p-value for
    "ks", "chisquare", "z"; a distance otherwise) and ``drift`` is ``score < threshold``
    for tests, ``score >= threshold`` for distances, False when the score is NaN.

    Raises :class:`modelog.ValidationError` (a ``ValueError``) naming the field and the
    rule: a frame is not a DataFrame, the frames' columns differ, a column name repeats,
    ``kinds``/``methods``/``thresholds`` name an unknown column or hold an invalid value,
    a "num"/"int" column is not numeric, an "int" column holds fractions.

    >>> ref = pd.DataFrame({"x": np.arange(100.0), "c": ["a", "b"] * 50})
    >>> cur = pd.DataFrame({"x": np.arange(100.0) + 50, "c": ["a"] * 100})
    >>> out = compare(ref, cur)
    >>> out[["column", "kind", "method", "drift"]].values.tolist()
    [['x', 'num', 'ks', True], ['c', 'cat', 'z', True]]
    """
    columns = _check_frames(reference, current)
    kinds = _resolve_kinds(reference, current, columns, kinds)
    methods = _check_methods(methods, kinds)
    thresholds = _check_thresholds(thresholds, kinds)
    rows = [
        _compare_column(
            name, reference[name], current[name], kinds[name], methods.get(name), thresholds.get(name)
        )
        for name in columns
    ]
    return _frame(rows)


# --- validation ----------------------------------------------------------------------------


def _check_frames(reference: Any, current: Any) -> list[Hashable]:
    for field, frame in (("reference", reference), ("current", current)):
        if not isinstance(frame, pd.DataFrame):
            raise ValidationError(field, type(frame).__name__, "must be a pandas DataFrame")
        if not frame.columns.is_unique:
            repeated = frame.columns[frame.columns.duplicated()].unique().tolist()
            raise ValidationError(f"{field}.columns", repeated, "column names must be unique")
    columns = list(reference.columns)
    in_current = set(current.columns)
    only_ref = [c for c in columns if c not in in_current]
    if only_ref:
        raise ValidationError(
            "current.columns", only_ref, f"column {only_ref[0]!r} is in reference but not in current"
        )
    in_reference = set(columns)
    only_cur = [c for c in current.columns if c not in in_reference]
    if only_cur:
        raise ValidationError(
            "reference.columns", only_cur, f"column {only_cur[0]!r} is in current but not in reference"
        )
    return columns


def _known(mapping: Any, field: str, kinds: Mapping[Hashable, str]) -> dict[Hashable, Any]:
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise ValidationError(field, type(mapping).__name__, "must be a mapping of column name to value")
    for name in mapping:
        if name not in kinds:
            raise ValidationError(f"{field}[{name!r}]", name, "names no column of the frames")
    return dict(mapping)


def _resolve_kinds(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[Hashable], kinds: Any
) -> dict[Hashable, str]:
    given = _known(kinds, "kinds", dict.fromkeys(columns, ""))
    for name, kind in given.items():
        if kind not in KINDS:
            raise ValidationError(f"kinds[{name!r}]", kind, f"must be one of {', '.join(KINDS)}")
    return {name: given.get(name) or _infer_kind(name, reference[name], current[name]) for name in columns}


def _dtype_kind(series: pd.Series) -> str | None:
    """"num", "cat", or None for a dtype that has no kind of its own (datetime, timedelta)."""
    dtype = series.dtype
    if ptypes.is_bool_dtype(dtype):
        return "cat"
    if ptypes.is_datetime64_any_dtype(dtype) or ptypes.is_timedelta64_dtype(dtype):
        return None
    if isinstance(dtype, pd.PeriodDtype):
        return None
    if ptypes.is_numeric_dtype(dtype) and not ptypes.is_complex_dtype(dtype):
        return "num"
    return "cat"


def _infer_kind(name: Hashable, reference: pd.Series, current: pd.Series) -> str:
    voters = [s for s in (reference, current) if s.notna().any()] or [reference]
    found = {_dtype_kind(s) for s in voters}
    if None in found:
        raise ValidationError(
            f"kinds[{name!r}]",
            str(reference.dtype),
            "no kind is inferred for datetime-like columns; pass kinds={column: 'cat'} or drop the column",
        )
    if len(found) > 1:
        raise ValidationError(
            f"kinds[{name!r}]",
            f"{reference.dtype} / {current.dtype}",
            "reference and current dtypes infer different kinds (num vs cat); pass kinds={column: ...}",
        )
    return found.pop()


def _check_methods(methods: Any, kinds: Mapping[Hashable, str]) -> dict[Hashable, str]:
    checked = _known(methods, "methods", kinds)
    for name, method in checked.items():
        if method not in METHODS:
            raise ValidationError(f"methods[{name!r}]", method, f"must be one of {', '.join(METHODS)}")
        if method in ds.NUMERIC_ONLY_METHODS and kinds[name] == "cat":
            raise ValidationError(
                f"methods[{name!r}]", method, f"{method!r} needs kind 'num' or 'int', the column is 'cat'"
            )
    return checked


def _check_thresholds(thresholds: Any, kinds: Mapping[Hashable, str]) -> dict[Hashable, float]:
    checked = _known(thresholds, "thresholds", kinds)
    for name, value in checked.items():
        real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
        if not real or not np.isfinite(value):
            raise ValidationError(f"thresholds[{name!r}]", value, "must be a finite number")
        checked[name] = float(value)
    return checked


# --- one column ----------------------------------------------------------------------------


def _missing_share(missing: int, total: int) -> float:
    return missing / total if total else float("nan")


def _as_float(series: pd.Series, name: Hashable, side: str, kind: str) -> tuple[np.ndarray, float]:
    """Finite values of a numeric-kind column, and its missing share (NaN, NA, +-inf)."""
    dtype = series.dtype
    if ptypes.is_bool_dtype(dtype) or (ptypes.is_numeric_dtype(dtype) and not ptypes.is_complex_dtype(dtype)):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        if _dtype_kind(series) is None or ptypes.is_complex_dtype(dtype):
            values = None
        else:
            try:
                values = pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError):
                values = None
        if values is None:
            raise ValidationError(
                f"{side}[{name!r}]", str(dtype), f"kind {kind!r} needs numbers (or bools); pass kind 'cat'"
            )
    finite = values[np.isfinite(values)]
    if kind == "int" and not np.array_equal(finite, np.floor(finite)):
        bad = finite[finite != np.floor(finite)][0]
        raise ValidationError(f"{side}[{name!r}]", float(bad), "kind 'int' needs whole numbers")
    return finite, _missing_share(values.size - finite.size, values.size)


def _category_codes(reference: pd.Series, current: pd.Series) -> tuple[np.ndarray, np.ndarray, int]:
    """Codes of the non-missing values over the union of both samples' categories (sorted if comparable)."""
    ref = reference[reference.notna()].to_numpy(dtype=object)
    cur = current[current.notna()].to_numpy(dtype=object)
    pooled = np.concatenate([ref, cur])
    try:
        codes, uniques = pd.factorize(pooled, sort=True)
    except TypeError:
        codes, uniques = pd.factorize(pooled, sort=False)
    return codes[: ref.size], codes[ref.size :], len(uniques)


def _compare_column(
    name: Hashable,
    reference: pd.Series,
    current: pd.Series,
    kind: str,
    method: str | None,
    threshold: float | None,
) -> dict[str, Any]:
    nan = float("nan")
    row: dict[str, Any] = {"column": name, "kind": kind, "chi2_p": nan}
    ref_counts = cur_counts = np.zeros(0, dtype=np.int64)  # per category / per value, when needed
    if kind == "cat":
        ref_codes, cur_codes, n_unique = _category_codes(reference, current)
        ref_counts, cur_counts = ds.category_counts(ref_codes, cur_codes, n_unique)
        n_ref, n_cur = ref_codes.size, cur_codes.size
        row.update(
            missing_ref=_missing_share(int(reference.isna().sum()), reference.size),
            missing_cur=_missing_share(int(current.isna().sum()), current.size),
            ks_stat=nan,
            ks_p=nan,
            psi=ds.psi_from_counts(ref_counts, cur_counts),
            js=ds.js_from_counts(ref_counts, cur_counts),
            wasserstein_norm=nan,
            chi2_p=ds.chi2_p_from_counts(ref_counts, cur_counts),
        )
    else:
        ref_values, missing_ref = _as_float(reference, name, "reference", kind)
        cur_values, missing_cur = _as_float(current, name, "current", kind)
        stats = ds.numeric_stats(ref_values, cur_values)
        n_ref, n_cur, n_unique = ref_values.size, cur_values.size, stats["n_unique"]
        row.update({key: stats[key] for key in ("ks_stat", "ks_p", "psi", "js", "wasserstein_norm")})
        row.update(missing_ref=missing_ref, missing_cur=missing_cur)
        method = method or ds.select_method(kind, n_ref, n_unique)
        per_value_js = method == "jensenshannon" and n_unique <= ds.FEW_VALUES
        if kind == "int" or method in ("chisquare", "z") or per_value_js:
            _, ref_counts, cur_counts = ds.value_counts_sorted(stats["reference_sorted"], stats["current_sorted"])
            if kind == "int":
                row["chi2_p"] = ds.chi2_p_from_counts(ref_counts, cur_counts)
    method = method or ds.select_method(kind, n_ref, n_unique)
    if method == "jensenshannon" and kind != "cat" and n_unique <= ds.FEW_VALUES and n_ref and n_cur:
        score = ds.js_from_counts(ref_counts, cur_counts)  # few distinct values: one bin per value, as Evidently
    elif method == "chisquare":
        score = ds.chisquare_p_from_counts(ref_counts, cur_counts)
    elif method == "z":
        score = ds.z_p_first_category(ref_counts, cur_counts)
    else:
        score = row[{"ks": "ks_p", "wasserstein": "wasserstein_norm", "jensenshannon": "js", "psi": "psi"}[method]]
    threshold = ds.DEFAULT_THRESHOLDS[method] if threshold is None else threshold
    row.update(
        n_ref=n_ref,
        n_cur=n_cur,
        method=method,
        score=float(score),
        threshold=threshold,
        drift=ds.is_drift(method, float(score), threshold),
    )
    return row


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for key in COLUMNS:
        values = [row[key] for row in rows]
        if key in _FLOAT_COLUMNS:
            data[key] = np.asarray(values, dtype=np.float64)
        elif key in ("n_ref", "n_cur"):
            data[key] = np.asarray(values, dtype=np.int64)
        elif key == "drift":
            data[key] = np.asarray(values, dtype=bool)
        elif key == "column":
            data[key] = pd.Series(values, dtype=object)
        else:
            data[key] = pd.Series(values, dtype="str")
    return pd.DataFrame(data, columns=list(COLUMNS))
