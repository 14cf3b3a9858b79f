"""Drift statistics on plain numpy arrays: the pure core behind :mod:`modelog.drift`.

Every function takes 1-D arrays with missing values already removed, or per-bin counts,
and returns plain floats; ``nan`` means "not computable" (an empty sample). Nothing here
reads pandas objects, so a streaming processor can feed the same functions with the counts
it keeps per window (``psi_from_counts``, ``js_from_counts``, ``chi2_p_from_counts``, ...).

Definitions (docs/drift.md has the long form):

- ``ks``: scipy's two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp`` defaults).
- ``wasserstein_norm``: Wasserstein-1 distance / ``max(std(reference, ddof=0), 1e-3)``.
- ``psi``: ``sum((r - c) * ln(r / c))`` over shares, zero shares replaced per sample by
  ``1e-4``, or by ``min_nonzero / 1e6`` when the smallest non-zero share is <= ``1e-4``.
- ``js``: Jensen-Shannon distance (``scipy.spatial.distance.jensenshannon``, natural log).
- numeric binning: inner edges are the unique linear quantiles 0.1 ... 0.9 of the
  reference; bins are right-closed, the outer two open-ended.
- ``chi2_p``: chi-square test of independence on the 2 x K count table (Yates when K = 2).
- ``chisquare_p``: Evidently's "chisquare" method, current counts against reference shares.
- ``z_p``: pooled two-proportion z-test, two-sided.

Functions with a ``_sorted`` argument or suffix rely on the caller having sorted the input
(ascending); :func:`numeric_stats` sorts once and shares the work between statistics.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special, stats

QUANTILES = np.arange(1, 10) / 10
"""The reference quantiles whose unique values are the inner bin edges (0.1 ... 0.9)."""

PSI_ZERO_SHARE = 1e-4
"""A zero share becomes this, unless the smallest non-zero share is not larger than it."""

PSI_TINY_DIVISOR = 1e6
"""...in which case a zero share becomes ``smallest_nonzero / PSI_TINY_DIVISOR``."""

STD_FLOOR = 1e-3
"""Lower bound of the reference standard deviation that normalises the Wasserstein distance."""

KS_EXACT_MAX_N = 10_000
"""scipy's ``ks_2samp`` (method "auto") is exact up to this sample size, asymptotic above."""

SMALL_REFERENCE = 1000
"""Reference sizes up to this use statistical tests by default, larger ones distances."""

TEST_METHODS = frozenset({"ks", "chisquare", "z"})
"""Methods whose score is a p-value: drift when ``score < threshold``."""

DISTANCE_METHODS = frozenset({"wasserstein", "jensenshannon", "psi"})
"""Methods whose score is a distance: drift when ``score >= threshold``."""

METHODS = TEST_METHODS | DISTANCE_METHODS
FEW_VALUES = 5
"""Numeric columns with at most this many distinct values (both samples) are scored per value by the
Jensen-Shannon *method* (Evidently's binning); the ``js`` column keeps the 10 quantile bins."""

NUMERIC_ONLY_METHODS = frozenset({"ks", "wasserstein"})

DEFAULT_THRESHOLDS = {
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.1,
}

NAN = float("nan")


# --- binning -------------------------------------------------------------------------------


def quantile_edges(reference: np.ndarray) -> np.ndarray:
    """Inner bin edges: the unique linear-interpolated quantiles 0.1 ... 0.9 of ``reference``.

    Duplicate quantiles collapse into one edge, so a constant reference has a single edge
    and two bins. Raises ``ValueError`` on an empty reference.

    >>> quantile_edges(np.arange(11.0)).tolist()
    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    """
    reference = np.asarray(reference, dtype=np.float64)
    if reference.size == 0:
        raise ValueError("quantile bins need a non-empty reference")
    return np.unique(np.quantile(reference, QUANTILES))


def bin_counts(values: np.ndarray, edges: np.ndarray, *, is_sorted: bool = False) -> np.ndarray:
    """Counts of ``values`` in the ``len(edges) + 1`` bins ``(-inf, e0], (e0, e1], ..., (e_last, inf)``.

    Bins are right-closed and the outer two open-ended. With ``is_sorted=True`` the values
    must be ascending and the count costs ``O(len(edges) * log n)``.

    >>> bin_counts(np.array([0.0, 1.0, 1.5, 2.0, 3.0]), np.array([1.0, 2.0])).tolist()
    [2, 2, 1]
    """
    values = np.asarray(values, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    if is_sorted:
        at_or_below = np.searchsorted(values, edges, side="right")
        return np.diff(at_or_below, prepend=0, append=values.size).astype(np.int64)
    index = np.searchsorted(edges, values, side="left")
    return np.bincount(index, minlength=edges.size + 1).astype(np.int64)


def category_counts(
    reference_codes: np.ndarray, current_codes: np.ndarray, n_categories: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-category counts of two samples of integer codes ``0 .. n_categories - 1``.

    The caller maps the union of both samples' categories to codes (``pandas.factorize``);
    every category then has a count in both arrays, zero where a sample lacks it.
    """
    ref = np.bincount(np.asarray(reference_codes, dtype=np.intp), minlength=n_categories)
    cur = np.bincount(np.asarray(current_codes, dtype=np.intp), minlength=n_categories)
    return ref.astype(np.int64), cur.astype(np.int64)


def value_counts_sorted(
    reference_sorted: np.ndarray, current_sorted: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct values of both sorted samples, ascending, and each sample's count of each.

    >>> v, r, c = value_counts_sorted(np.array([1.0, 1.0, 2.0]), np.array([2.0, 3.0]))
    >>> v.tolist(), r.tolist(), c.tolist()
    ([1.0, 2.0, 3.0], [2, 1, 0], [0, 1, 1])
    """
    values = np.union1d(reference_sorted, current_sorted)
    ref = np.diff(np.searchsorted(reference_sorted, values, side="right"), prepend=0)
    cur = np.diff(np.searchsorted(current_sorted, values, side="right"), prepend=0)
    return values, ref.astype(np.int64), cur.astype(np.int64)


def shares(counts: np.ndarray) -> np.ndarray:
    """``counts / counts.sum()`` as float64 (all ``nan`` when the total is 0)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return np.full(counts.shape, NAN)
    return counts / total


def fill_zero_shares(share: np.ndarray) -> np.ndarray:
    """Replace zero shares by ``1e-4``, or by ``min_nonzero / 1e6`` if ``min_nonzero <= 1e-4``.

    The shares are not renormalised afterwards. Returns a new array.

    >>> fill_zero_shares(np.array([0.5, 0.5, 0.0])).tolist()
    [0.5, 0.5, 0.0001]
    """
    share = np.array(share, dtype=np.float64)
    zero = share == 0
    if zero.any() and not zero.all():
        smallest = share[~zero].min()
        share[zero] = smallest / PSI_TINY_DIVISOR if smallest <= PSI_ZERO_SHARE else PSI_ZERO_SHARE
    return share


# --- distances on binned data --------------------------------------------------------------


def psi_from_shares(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Population stability index ``sum((r - c) * ln(r / c))`` after :func:`fill_zero_shares`."""
    r = fill_zero_shares(reference_shares)
    c = fill_zero_shares(current_shares)
    if r.size == 0 or not (r > 0).all() or not (c > 0).all():
        return NAN  # an empty sample (shares all nan or all zero)
    return float(np.sum((r - c) * np.log(r / c)))


def psi_from_counts(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """PSI of two count vectors over the same bins; ``nan`` if either sample is empty.

    >>> round(psi_from_counts([50, 50], [25, 75]), 6)
    0.274653
    """
    return psi_from_shares(shares(reference_counts), shares(current_counts))


def js_from_counts(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log, no zero fill) of two count vectors.

    ``nan`` if either sample is empty. Rounding can make the divergence of two nearly equal
    distributions a hair below zero, where scipy's square root gives ``nan``; that is 0.
    """
    r = shares(reference_counts)
    c = shares(current_counts)
    if r.size == 0 or np.isnan(r).any() or np.isnan(c).any():
        return NAN
    return _jensenshannon(r, c)


def _jensenshannon(p: np.ndarray, q: np.ndarray) -> float:
    """``scipy.spatial.distance.jensenshannon(p, q)`` for 1-D float arrays, in scipy's order of operations
    (so the same number) without its argument handling, which cost more than the arithmetic on a window's
    ten bins (the drift processor computes it for every column of every window); ``nan`` -> 0 as above."""
    p = p / np.sum(p)
    q = q / np.sum(q)
    m = (p + q) / 2.0
    half = float((np.sum(special.rel_entr(p, m)) + np.sum(special.rel_entr(q, m))) / 2.0)
    return math.sqrt(half) if half >= 0 else 0.0


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI of two numeric samples over the reference's quantile bins (:func:`quantile_edges`)."""
    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    if reference.size == 0 or current.size == 0:
        return NAN
    edges = quantile_edges(reference)
    return psi_from_counts(bin_counts(reference, edges), bin_counts(current, edges))


def js(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance of two numeric samples over the reference's quantile bins."""
    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    if reference.size == 0 or current.size == 0:
        return NAN
    edges = quantile_edges(reference)
    return js_from_counts(bin_counts(reference, edges), bin_counts(current, edges))


# --- tests on counts -----------------------------------------------------------------------


def chi2_p_from_counts(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """p-value of the chi-square test of independence on the 2 x K table of counts.

    Yates' continuity correction applies when K = 2 (scipy's ``chi2_contingency`` default);
    K = 1 has no degree of freedom and gives 1.0. Categories absent from both samples are
    dropped first; ``nan`` if either sample is empty.
    """
    ref = np.asarray(reference_counts, dtype=np.int64)
    cur = np.asarray(current_counts, dtype=np.int64)
    if ref.sum() == 0 or cur.sum() == 0:
        return NAN
    seen = (ref + cur) > 0
    table = np.vstack([ref[seen], cur[seen]])
    return _chi2_contingency_p(table)


def _chi2_contingency_p(observed: np.ndarray) -> float:
    """``scipy.stats.chi2_contingency(observed).pvalue`` for a 2 x K table of counts with no empty column:
    scipy's own steps (expected frequencies from the margins, Yates' correction at one degree of freedom,
    Pearson's statistic summed over the table, the chi-square survival function), without the ~1 ms its
    argument handling costs per call, which the drift processor pays for every categorical column of every
    window. Equal to scipy's within rounding (tests/unit/test_drift_stats.py)."""
    dof = observed.shape[1] - 1
    if dof == 0:
        return 1.0
    f_obs = observed.astype(np.float64)
    expected = f_obs.sum(axis=1, keepdims=True) * f_obs.sum(axis=0, keepdims=True) / f_obs.sum()
    if dof == 1:
        diff = expected - f_obs
        f_obs = f_obs + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    statistic = np.sum((f_obs - expected) ** 2 / expected)
    return float(special.chdtrc(dof, statistic))


def chisquare_p_from_counts(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """p-value of Evidently's "chisquare" drift test: goodness of fit of the current counts.

    Expected counts are the reference counts scaled to the current size,
    ``ref * n_cur / n_ref``, and the test is ``scipy.stats.chisquare(cur, expected)``. A
    category seen in the current sample but never in the reference makes the statistic
    infinite and the p-value 0 (returned directly, without scipy's divide-by-zero warning).
    One category only: 1.0 (scipy gives ``nan`` for zero degrees of freedom).
    """
    ref = np.asarray(reference_counts, dtype=np.float64)
    cur = np.asarray(current_counts, dtype=np.float64)
    n_ref, n_cur = ref.sum(), cur.sum()
    if n_ref == 0 or n_cur == 0:
        return NAN
    seen = (ref + cur) > 0
    ref, cur = ref[seen], cur[seen]
    if ref.size < 2:
        return 1.0
    if ((ref == 0) & (cur > 0)).any():
        return 0.0
    expected = ref * (n_cur / n_ref)
    return float(stats.chisquare(cur, expected).pvalue)


def z_p_from_counts(reference_hits: int, n_reference: int, current_hits: int, n_current: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test.

    ``z = (p1 - p2) / sqrt(P (1 - P) (1/n1 + 1/n2))`` with ``P = (x1 + x2) / (n1 + n2)`` and
    ``p = 2 * sf(|z|)`` of the standard normal. When ``P`` is 0 or 1 both proportions are
    equal and the p-value is 1. ``nan`` if either sample is empty.

    >>> round(z_p_from_counts(20, 300, 21, 298), 6)
    0.854006
    """
    if n_reference == 0 or n_current == 0:
        return NAN
    p1 = reference_hits / n_reference
    p2 = current_hits / n_current
    pooled = (reference_hits + current_hits) / (n_reference + n_current)
    if pooled <= 0.0 or pooled >= 1.0:
        return 1.0
    z = (p1 - p2) / math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_reference + 1.0 / n_current))
    return float(2.0 * stats.norm.sf(abs(z)))


def z_p_first_category(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """z-test of the share of every category but the first (Evidently: first sorted key vs rest)."""
    ref = np.asarray(reference_counts, dtype=np.int64)
    cur = np.asarray(current_counts, dtype=np.int64)
    n_ref, n_cur = int(ref.sum()), int(cur.sum())
    if n_ref == 0 or n_cur == 0:
        return NAN
    return z_p_from_counts(n_ref - int(ref[0]), n_ref, n_cur - int(cur[0]), n_cur)


# --- tests and distances on raw numeric samples --------------------------------------------


def _ecdf_counts_sorted(
    reference_sorted: np.ndarray, current_sorted: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct pooled values, ascending, and at each how many reference / current values are <= it.

    A stable argsort of the two concatenated sorted runs is a linear merge (timsort); cumulative
    counts of which run each value came from, read at the last of each group of equal values,
    give the ECDF counts (~3x faster than searching every pooled value in both samples).
    """
    pooled = np.concatenate([reference_sorted, current_sorted])
    order = np.argsort(pooled, kind="stable")
    pooled = pooled[order]
    ref_le = np.cumsum(order < reference_sorted.size)
    cur_le = np.arange(1, pooled.size + 1) - ref_le
    last = np.empty(pooled.size, dtype=bool)
    last[:-1] = pooled[1:] != pooled[:-1]
    last[-1] = True
    return pooled[last], ref_le[last], cur_le[last]


def _ks_from_ecdf(n_ref: int, n_cur: int, ref_le: np.ndarray, cur_le: np.ndarray) -> float:
    """The two-sided KS statistic, computed as ``scipy.stats.ks_2samp`` does."""
    diffs = ref_le / n_ref - cur_le / n_cur
    below = min(max(-float(diffs.min()), 0.0), 1.0)
    above = float(diffs.max())
    return below if below > above else above


def _ks_asymptotic_p(statistic: float, n_ref: int, n_cur: int) -> float:
    """scipy's asymptotic two-sided p-value: ``kstwo.sf(d, round(n1 n2 / (n1 + n2)))``."""
    m, n = sorted([float(n_ref), float(n_cur)], reverse=True)
    p = stats.kstwo.sf(statistic, np.round(m * n / (m + n)))
    return float(np.clip(p, 0.0, 1.0))


def ks(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample KS ``(statistic, p_value)`` exactly as ``scipy.stats.ks_2samp`` (defaults).

    ``(nan, nan)`` if either sample is empty.
    """
    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    if reference.size == 0 or current.size == 0:
        return NAN, NAN
    result = stats.ks_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


def wasserstein_norm(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein-1 distance divided by ``max(std(reference, ddof=0), 1e-3)``; ``nan`` if empty."""
    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    if reference.size == 0 or current.size == 0:
        return NAN
    scale = max(float(np.std(reference)), STD_FLOOR)
    return float(stats.wasserstein_distance(reference, current)) / scale


def numeric_stats(reference: np.ndarray, current: np.ndarray) -> dict[str, Any]:
    """Every numeric statistic of two samples, sharing one sort between them.

    Returns ``ks_stat``, ``ks_p``, ``wasserstein_norm``, ``psi``, ``js`` (floats, ``nan``
    when a sample is empty), ``n_unique`` (distinct values over both samples) and the sorted
    samples ``reference_sorted`` / ``current_sorted`` for further per-value counting. The
    values equal :func:`ks`, :func:`wasserstein_norm`, :func:`psi` and :func:`js`; KS
    p-values use scipy's exact method up to 10 000 values per sample, else scipy's
    asymptotic formula, as ``ks_2samp`` does.
    """
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    cur = np.sort(np.asarray(current, dtype=np.float64))
    out: dict[str, Any] = {
        "ks_stat": NAN,
        "ks_p": NAN,
        "wasserstein_norm": NAN,
        "psi": NAN,
        "js": NAN,
        "n_unique": 0,
        "reference_sorted": ref,
        "current_sorted": cur,
    }
    if ref.size == 0 or cur.size == 0:
        out["n_unique"] = count_unique_sorted(ref, cur)
        return out
    pooled, ref_le, cur_le = _ecdf_counts_sorted(ref, cur)
    out["n_unique"] = int(pooled.size)
    n_ref, n_cur = ref.size, cur.size
    if max(n_ref, n_cur) <= KS_EXACT_MAX_N:
        out["ks_stat"], out["ks_p"] = ks(ref, cur)
    else:
        statistic = _ks_from_ecdf(n_ref, n_cur, ref_le, cur_le)
        out["ks_stat"], out["ks_p"] = statistic, _ks_asymptotic_p(statistic, n_ref, n_cur)
    # Wasserstein-1 = integral of |F_ref - F_cur|, the same sums scipy's _cdf_distance makes.
    gaps = np.diff(pooled)
    ecdf_gap = np.abs(ref_le[:-1] / n_ref - cur_le[:-1] / n_cur)
    out["wasserstein_norm"] = float(np.dot(ecdf_gap, gaps)) / max(float(np.std(ref)), STD_FLOOR)
    edges = quantile_edges(ref)
    ref_counts = bin_counts(ref, edges, is_sorted=True)
    cur_counts = bin_counts(cur, edges, is_sorted=True)
    out["psi"] = psi_from_counts(ref_counts, cur_counts)
    out["js"] = js_from_counts(ref_counts, cur_counts)
    return out


def count_unique_sorted(reference_sorted: np.ndarray, current_sorted: np.ndarray) -> int:
    """Distinct values over two sorted samples (no ``nan`` allowed)."""
    return int(np.union1d(reference_sorted, current_sorted).size)


# --- method choice -------------------------------------------------------------------------


def select_method(kind: str, n_reference: int, n_unique: int) -> str:
    """Evidently's default drift method for a column.

    ``kind`` is "num", "int" (both numerical) or "cat"; ``n_reference`` counts the
    reference's non-missing values, ``n_unique`` the distinct values over both samples.

    - reference <= 1000: "ks" for numerical with > 5 distinct values; "chisquare" for
      categorical, or numerical with 3-5 distinct; "z" for <= 2 distinct.
    - reference > 1000: "wasserstein" for numerical with > 5 distinct, else "jensenshannon".

    >>> select_method("num", 1000, 6), select_method("cat", 1001, 6)
    ('ks', 'jensenshannon')
    """
    numerical = kind in ("num", "int")
    if n_reference <= SMALL_REFERENCE:
        if numerical and n_unique > 5:
            return "ks"
        return "chisquare" if n_unique > 2 else "z"
    return "wasserstein" if numerical and n_unique > 5 else "jensenshannon"


def is_drift(method: str, score: float, threshold: float) -> bool:
    """``score < threshold`` for tests, ``score >= threshold`` for distances; False for ``nan``."""
    if math.isnan(score):
        return False
    if method in TEST_METHODS:
        return score < threshold
    return score >= threshold
