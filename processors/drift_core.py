"""Window -> drift statistics -> alerts. Pure: no faust, no Kafka, no DuckDB.

``measure_window`` compares one closed window of production data with the reference profile
(``producers/_profile.py``) using the same statistics, binning, method rule and thresholds as
``modelog.drift.compare`` (docs/drift.md): with a reference of at most the profile's sample size,
the numbers are identical (except ``ks_p`` for references above 1,000 values, where KS never decides
and the asymptotic p-value replaces scipy's exact one); above it, PSI/JS/chi-square/z stay exact (reference counts) and KS
and Wasserstein use the reference sample.

``step_alerts`` is the hysteresis: an incident opens after ``raise_after`` consecutive windows
breaking a rule and closes after ``resolve_after`` consecutive calm windows, so one incident is
one RAISED and one RESOLVED.
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from scipy import special
from scipy import stats as sstats

from modelog.drift import stats as ds
from modelog.drift.profile import value_text

DEFAULT_WINDOW_ROWS = 1000
MAX_KNOWN_UNIQUE = 1001  # stands for "more distinct reference values than the profile counted"
ALERT_RULES = ("dataset_drift", "prediction_drift")


@dataclass(frozen=True)
class MonitorConfig:
    window_rows: int | None = DEFAULT_WINDOW_ROWS
    window_seconds: int | None = None
    methods: dict[str, str] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    drift_share: float = 0.5
    raise_after: int = 1
    resolve_after: int = 2

    @classmethod
    def from_record(cls, r: dict | None) -> MonitorConfig:
        if not r:
            return cls()
        rows, seconds = r.get("window_rows"), r.get("window_seconds")
        if rows is None and seconds is None:
            rows = DEFAULT_WINDOW_ROWS
        return cls(rows, seconds, dict(r.get("methods", {})), dict(r.get("thresholds", {})),
                   r.get("drift_share", 0.5), max(1, r.get("raise_after", 1)), max(1, r.get("resolve_after", 2)))


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _numeric(values: list | np.ndarray) -> tuple[np.ndarray, int]:
    """Finite float values and the number of missing ones (None, NaN, +-inf, unparsable text)."""
    if isinstance(values, np.ndarray) and values.dtype == np.float64:  # a window of buffers (decision 0025)
        arr = values
    else:
        arr = np.fromiter((_to_float(v) for v in values), dtype=np.float64, count=len(values))
    finite = arr[np.isfinite(arr)]
    return finite, int(arr.size - finite.size)


def _to_float(v: Any) -> float:
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _texts(values: list) -> tuple[list[str], int]:
    # text is counted as it is (value_text's last case) without its isinstance checks: a window of categories
    # is almost all text, and those checks were most of a categorical column's cost
    present = [v if type(v) is str else value_text(v) for v in values
               if type(v) is str or (v is not None and not (isinstance(v, float) and math.isnan(v)))]
    return present, len(values) - len(present)


class _Reference(NamedTuple):
    """What a window's KS and Wasserstein need of a reference column's sample, computed once per reference
    (decision 0026): the sorted sample ``u``, each value's CDF count, and the area under its CDF up to it."""

    values: np.ndarray  # u, sorted
    right: np.ndarray  # searchsorted(u, u, "right"): F_u at each u (times n)
    area: np.ndarray  # area[j] = the integral of F_u from -inf to u[j]


_SAMPLES: dict[int, tuple[dict, _Reference]] = {}  # id(reference column) -> (that column, its arrays)


def _reference(ref: dict) -> _Reference:
    """The prepared sample of ``ref``, cached while the same column object is measured again (the drift
    processor measures every window against the same reference objects)."""
    hit = _SAMPLES.get(id(ref))
    if hit is not None and hit[0] is ref:
        return hit[1]
    out = _prepare(np.sort(sample_values(ref)))
    if len(_SAMPLES) >= 4096:
        _SAMPLES.clear()
    _SAMPLES[id(ref)] = (ref, out)
    return out


def sample_values(ref: dict) -> np.ndarray:
    """A reference column's sample: the profile's ``sample`` list, or ``sample_f8`` (base64 float64 bytes, the
    form the drift processor's state keeps it in, decision 0026)."""
    if "sample_f8" in ref:
        return np.frombuffer(base64.b64decode(ref["sample_f8"]), "<f8")
    return np.asarray(ref.get("sample", []), dtype=np.float64)


def _prepare(u: np.ndarray) -> _Reference:
    n = u.size
    # F_u is i/n on [u[i-1], u[i]): the area up to u[j] is the sum of those rectangles (bounded by the data's
    # range, so no large partial sums cancel when two are subtracted)
    steps = np.arange(1, n) / n * np.diff(u)
    return _Reference(u, np.searchsorted(u, u, side="right"), np.concatenate(([0.0], np.cumsum(steps))))


def _area(ref: _Reference, x: np.ndarray, right: np.ndarray | None = None) -> np.ndarray:
    """The integral of F_u from -inf to each ``x`` (``right``: ``searchsorted(u, x, "right")`` if known)."""
    u, n = ref.values, ref.values.size
    if right is None:
        right = np.searchsorted(u, x, side="right")
    j = np.maximum(right - 1, 0)
    return np.where(right > 0, ref.area[j] + right / n * (x - u[j]), 0.0)


def _ks_windowed(ref: _Reference, v: np.ndarray, right: np.ndarray, exact_asymp: bool) -> tuple[float, float]:
    """``scipy.stats.ks_2samp(u, v, method="asymp")`` in O(m log n) for a sorted window ``v`` of m values.

    scipy takes the largest and the smallest difference F_u - F_v over every value of either sample. At the
    window's values it is read directly. Between two consecutive window values F_v is constant and F_u only
    grows, so over the reference values there the largest difference is at the last of them (F_u = the count
    of u below the next window value) and the smallest at the first (its own CDF count). The candidates are
    the same integers divided the same way as scipy's, so the statistic is equal to the last bit. The p-value
    is scipy's (``kstwo.sf``) when ``exact_asymp`` (KS decides), else Kolmogorov's limit with Stephens'
    correction (within 0.01 of it for references above 1,000 values, ~100x cheaper: informational there)."""
    u = ref.values
    n, m = u.size, v.size
    # searchsorted(u, v, "left") and searchsorted(v, v, "right") without searching where no value repeats (a
    # search costs ~20 us, the checks a few): left = right unless a window value is in the sample
    if (np.take(u, right - 1, mode="clip") == v).any():
        left = np.searchsorted(u, v, side="left")
    else:
        left = right
    if m > 1 and (v[1:] == v[:-1]).any():
        v_right = np.searchsorted(v, v, side="right")
    else:
        v_right = np.arange(1, m + 1)
    at_v = right / n - v_right / m
    # group k (k = 0..m): the reference values with exactly k window values <= them, u[lo[k]:hi[k]]
    lo = np.concatenate(([0], left))
    hi = np.concatenate((left, [n]))
    k = np.arange(m + 1)
    full = hi > lo
    highest = hi[full] / n - k[full] / m
    lowest = ref.right[lo[full]] / n - k[full] / m
    cddiffs = np.concatenate((at_v, highest, lowest))
    min_s = np.clip(-cddiffs[np.argmin(cddiffs)], 0, 1)
    max_s = cddiffs[np.argmax(cddiffs)]
    d = float(min_s if min_s > max_s else max_s)
    big, small = sorted([float(n), float(m)], reverse=True)
    en = big * small / (big + small)
    if exact_asymp:
        p = float(sstats.kstwo.sf(d, np.round(en)))
    else:
        root = math.sqrt(en)
        p = float(special.kolmogorov((root + 0.12 + 0.11 / root) * d))
    return d, float(np.clip(p, 0, 1))


def _wasserstein_windowed(ref: _Reference, v: np.ndarray, right: np.ndarray | None = None) -> float:
    """``scipy.stats.wasserstein_distance(u, v)`` (the integral of |F_u - F_v|) in O(m log n) for a sorted
    window ``v``: between two consecutive window values F_v is a constant c and F_u only grows, so the
    integral there is c times the part of the span where F_u < c minus F_u's area over it, plus F_u's area
    over the rest minus c times its length; F_u crosses c at u[ceil(c n) - 1]. Areas come from the reference's
    prepared running area. Equal to scipy's within rounding (~1e-12 relative; tests/unit/processors/
    test_drift_core.py), not to the last bit: scipy sums over the merged samples."""
    u = ref.values
    n, m = u.size, v.size
    if right is None:
        right = np.searchsorted(u, v, side="right")
    at_v = _area(ref, v, right)
    total = at_v[0]  # (-inf, v[0]): F_v = 0, the area under F_u
    if m > 1:
        a, b = v[:-1], v[1:]
        k = np.arange(1, m)
        c = k / m
        at = -(-(k * n) // m) - 1  # F_u >= c from u[ceil(k n / m) - 1] on
        crossing = u[at]
        cross = np.clip(crossing, a, b)
        # the area up to the crossing: at a sample value, the prepared area (ties have no width); clipped to an
        # end of the span, the area there
        at_cross = np.where(crossing <= a, at_v[:-1], np.where(crossing >= b, at_v[1:], ref.area[at]))
        below = c * (cross - a) - (at_cross - at_v[:-1])
        above = (at_v[1:] - at_cross) - c * (b - cross)
        total += np.add.reduce(below + above)
    end = max(u[-1], v[-1])  # [v[-1], end): F_v = 1, one minus F_u
    total += (end - v[-1]) - (ref.area[-1] + (end - u[-1]) - at_v[-1])  # F_u = 1 from u[-1] on
    return float(total)


def _sorted_numeric(values: list | np.ndarray) -> tuple[np.ndarray, int]:
    cur, missing = _numeric(values)
    return np.sort(cur), missing


_STACKS: dict[tuple[int, ...], tuple[list[dict], tuple[np.ndarray, ...]]] = {}  # ids of reference columns -> arrays


def _stacked(refs: list[dict]) -> tuple[np.ndarray, ...]:
    """The prepared samples of ``refs`` (one size) as rows: values, CDF counts, areas, bin counts, scales;
    cached while the same column objects are measured again."""
    key = tuple(id(r) for r in refs)
    hit = _STACKS.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], refs)):
        return hit[1]
    prepared = [_reference(r) for r in refs]
    out = (np.stack([p.values for p in prepared]), np.stack([p.right for p in prepared]),
           np.stack([p.area for p in prepared]),
           np.stack([np.asarray(r["bin_counts"], dtype=np.int64) for r in refs]),
           np.array([max(r.get("std") or 0.0, 1e-3) for r in refs]))
    if len(_STACKS) >= 256:
        _STACKS.clear()
    _STACKS[key] = (list(refs), out)
    return out


def _fill_zero_shares_rows(share: np.ndarray) -> np.ndarray:
    """:func:`modelog.drift.stats.fill_zero_shares` on each row."""
    zero = share == 0
    smallest = np.where(zero, np.inf, share).min(axis=1, keepdims=True)
    fill = np.where(smallest <= ds.PSI_ZERO_SHARE, smallest / ds.PSI_TINY_DIVISOR, ds.PSI_ZERO_SHARE)
    some = zero.any(axis=1, keepdims=True) & ~zero.all(axis=1, keepdims=True)
    return np.where(zero & some, fill, share)


def _numeric_stats_rows(refs: list[dict], windows: list[np.ndarray], exact_ks: list[bool]) -> list[tuple]:
    """(KS statistic, KS p, normalised Wasserstein, PSI, JS) of several numeric columns at once: reference
    samples of one size n, windows of one size m (sorted, finite, m >= 1), bins of one count. The same
    arithmetic as :func:`_ks_windowed`, :func:`_wasserstein_windowed` and ``drift.stats``' PSI and JS, on
    rows of 2-D arrays: one numpy call per step for all the columns instead of one per column (the calls,
    not the arithmetic, were the cost). A column whose window shares a value with its sample or repeats a
    value takes :func:`_ks_windowed` for KS."""
    U, R, A, ref_bins, scale = _stacked(refs)
    V = np.stack(windows)
    c, n = U.shape
    m = V.shape[1]
    right = np.stack([np.searchsorted(U[i], V[i], side="right") for i in range(c)])
    bins = np.stack([ds.bin_counts(V[i], np.asarray(refs[i].get("edges", []), dtype=np.float64), is_sorted=True)
                     for i in range(c)])
    rows = np.arange(c)[:, None]
    # KS: as _ks_windowed where no window value is in the sample and none repeats (left = right)
    j = np.maximum(right - 1, 0)
    u_at = U[rows, j]
    simple = ~(((right > 0) & (u_at == V)).any(axis=1) | (V[:, 1:] == V[:, :-1]).any(axis=1))
    at_v = right / n - np.arange(1, m + 1) / m
    k = np.arange(m + 1)
    lo = np.concatenate((np.zeros((c, 1), dtype=right.dtype), right), axis=1)
    hi = np.concatenate((right, np.full((c, 1), n, dtype=right.dtype)), axis=1)
    full = hi > lo
    highest = np.where(full, hi / n - k / m, -np.inf).max(axis=1)
    lowest = np.where(full, R[rows, np.minimum(lo, n - 1)] / n - k / m, np.inf).min(axis=1)
    max_s = np.maximum(at_v.max(axis=1), highest)
    min_s = np.clip(-np.minimum(at_v.min(axis=1), lowest), 0, 1)
    d = np.where(min_s > max_s, min_s, max_s)
    big, small = sorted([float(n), float(m)], reverse=True)
    en = big * small / (big + small)
    root = math.sqrt(en)
    p_cheap = np.clip(special.kolmogorov((root + 0.12 + 0.11 / root) * d), 0, 1)
    # Wasserstein: as _wasserstein_windowed
    area_v = np.where(right > 0, A[rows, j] + right / n * (V - u_at), 0.0)
    total = area_v[:, 0].copy()
    if m > 1:
        a, b = V[:, :-1], V[:, 1:]
        kk = np.arange(1, m)
        share = kk / m
        at = -(-(kk * n) // m) - 1
        crossing = U[:, at]
        cross = np.clip(crossing, a, b)
        at_cross = np.where(crossing <= a, area_v[:, :-1], np.where(crossing >= b, area_v[:, 1:], A[:, at]))
        below = share * (cross - a) - (at_cross - area_v[:, :-1])
        above = (area_v[:, 1:] - at_cross) - share * (b - cross)
        total += np.add.reduce(below + above, axis=1)
    end = np.maximum(U[:, -1], V[:, -1])
    total += (end - V[:, -1]) - (A[:, -1] + (end - U[:, -1]) - area_v[:, -1])
    wass = total / scale
    # PSI and JS over each column's bins, as drift.stats does them
    r_share = ref_bins / ref_bins.sum(axis=1, keepdims=True)
    c_share = bins / bins.sum(axis=1, keepdims=True)
    r_fill, c_fill = _fill_zero_shares_rows(r_share), _fill_zero_shares_rows(c_share)
    with np.errstate(divide="ignore", invalid="ignore"):
        psi = np.where((r_fill > 0).all(axis=1) & (c_fill > 0).all(axis=1),
                       np.sum((r_fill - c_fill) * np.log(r_fill / c_fill), axis=1), math.nan)
    pp = r_share / np.sum(r_share, axis=1, keepdims=True)
    qq = c_share / np.sum(c_share, axis=1, keepdims=True)
    mid = (pp + qq) / 2.0
    half = (np.sum(special.rel_entr(pp, mid), axis=1) + np.sum(special.rel_entr(qq, mid), axis=1)) / 2.0
    js = np.where(half >= 0, np.sqrt(np.maximum(half, 0.0)), 0.0)
    out = []
    for i in range(c):
        if simple[i] and not exact_ks[i]:
            ks = (float(d[i]), float(p_cheap[i]))
        else:
            ks = _ks_windowed(_reference(refs[i]), V[i], right[i], exact_asymp=exact_ks[i])
        out.append((*ks, float(wass[i]), float(psi[i]), float(js[i])))
    return out


def measure_column(ref: dict, values: list | np.ndarray, method: str | None = None,
                   threshold: float | None = None, *, window: tuple[np.ndarray, int] | None = None,
                   stats: tuple[float, float, float, float, float] | None = None) -> dict:
    """One ColumnDrift record: the window's ``values`` (numbers or text, None = missing; or a float64 array,
    NaN = missing) vs ``ref``.

    ``window`` and ``stats`` are what :func:`measure_window` computed already for a numeric column: its sorted
    finite values and missing count, and (KS statistic, KS p, normalised Wasserstein, PSI, JS)."""
    kind = ref["kind"]
    if kind == "CAT" and isinstance(values, np.ndarray):
        values = values.tolist()
    n_ref = ref["count"]
    total_ref = ref["count"] + ref["missing"]
    nan = math.nan
    row: dict[str, Any] = {"column": ref["name"], "kind": kind.lower(), "role": ref["role"], "n_ref": n_ref,
                           "missing_ref": ref["missing"] / total_ref if total_ref else None}
    chi2 = ks_stat = ks_p = wass = nan
    unseen = 0
    if kind == "CAT":
        cur, missing = _texts(values)
        ref_cats = ref.get("categories", {})
        cur_counter = Counter(cur)
        unseen = sum(c for v, c in cur_counter.items() if v not in ref_cats)
        cats = sorted(set(ref_cats) | set(cur_counter))
        ref_counts = np.array([ref_cats.get(c, 0) for c in cats], dtype=np.int64)
        cur_counts = np.array([cur_counter.get(c, 0) for c in cats], dtype=np.int64)
        n_cur, n_unique = len(cur), len(cats)
        psi = ds.psi_from_counts(ref_counts, cur_counts) if n_ref and n_cur else nan
        js = ds.js_from_counts(ref_counts, cur_counts) if n_ref and n_cur else nan
        chi2 = ds.chi2_p_from_counts(ref_counts, cur_counts) if n_ref and n_cur else nan
    else:
        cur, missing = _sorted_numeric(values) if window is None else window
        n_cur = int(cur.size)
        edges = np.asarray(ref.get("edges", []), dtype=np.float64)
        ref_cats = ref.get("categories") or {}
        if ref_cats:
            ref_values = np.array(sorted(float(k) for k in ref_cats), dtype=np.float64)
            cur_unique = np.unique(cur)
            n_unique = int(np.union1d(ref_values, cur_unique).size)
        else:
            n_unique = max(ref["unique"], MAX_KNOWN_UNIQUE)
        if stats is not None:
            ks_stat, ks_p, wass, psi, js = stats
        elif n_ref and n_cur:
            prepared = _reference(ref)
            right = np.searchsorted(prepared.values, cur, side="right")
            if n_ref <= ds.SMALL_REFERENCE:  # KS may decide drift: scipy's default (exact for small samples)
                ks_stat, ks_p = ds.ks(prepared.values, cur)
            else:  # informational unless configured: the asymptotic p-value (see _ks_windowed)
                chosen = method or ds.select_method(kind.lower(), n_ref, n_unique)
                ks_stat, ks_p = _ks_windowed(prepared, cur, right, exact_asymp=chosen == "ks")
            wass = _wasserstein_windowed(prepared, cur, right) / max(ref.get("std") or 0.0, 1e-3)
            cur_bins = ds.bin_counts(cur, edges, is_sorted=True)
            ref_bins = np.asarray(ref["bin_counts"], dtype=np.int64)
            psi, js = ds.psi_from_counts(ref_bins, cur_bins), ds.js_from_counts(ref_bins, cur_bins)
        else:
            psi = js = nan
        ref_counts = cur_counts = np.zeros(0, dtype=np.int64)
        if ref_cats and n_cur:
            values_all = np.union1d(ref_values, cur)
            ref_counts = np.array([ref_cats.get(value_text(v), 0) for v in values_all], dtype=np.int64)
            cur_counts = np.diff(np.searchsorted(cur, values_all, side="right"), prepend=0).astype(np.int64)
            if kind == "INT":
                chi2 = ds.chi2_p_from_counts(ref_counts, cur_counts)
    method = method or (ds.select_method(kind.lower(), n_ref, n_unique) if n_ref else "ks")
    if not n_ref or not n_cur:
        score = nan
    elif method == "jensenshannon" and kind != "CAT" and n_unique <= ds.FEW_VALUES and ref_counts.size:
        score = ds.js_from_counts(ref_counts, cur_counts)  # few distinct values: one bin per value
    elif method == "chisquare":
        score = ds.chisquare_p_from_counts(ref_counts, cur_counts) if ref_counts.size else nan
    elif method == "z":
        score = ds.z_p_first_category(ref_counts, cur_counts) if ref_counts.size else nan
    else:
        score = {"ks": ks_p, "wasserstein": wass, "jensenshannon": js, "psi": psi}[method]
    threshold = ds.DEFAULT_THRESHOLDS[method] if threshold is None else float(threshold)
    drift = bool(not math.isnan(score) and ds.is_drift(method, float(score), threshold))
    row.update(method=method, score=_nan_to_none(score), threshold=threshold, drift=drift, n_cur=n_cur,
               missing_cur=(missing / len(values)) if len(values) else None, ks_stat=_nan_to_none(ks_stat),
               ks_p=_nan_to_none(ks_p), psi=_nan_to_none(psi), js=_nan_to_none(js),
               wasserstein_norm=_nan_to_none(wass), chi2_p=_nan_to_none(chi2), unseen=unseen)
    return row



def measure_window(profile: list[dict], columns: dict[str, list], config: MonitorConfig) -> dict:
    """Drift of one window: per-column records, the drifted share of features, dataset drift.

    ``columns`` maps a column name to its window values; reference columns missing from the
    window are skipped (a label column never arrives with predictions).
    """
    measured = [ref for ref in profile if ref["role"] != "LABEL" and ref["name"] in columns]
    # numeric columns with a large reference (KS informs, scipy's exact KS is not needed) are computed
    # together, grouped by sample size, window size and bin count
    windows: dict[str, tuple[np.ndarray, int]] = {}
    groups: dict[tuple[int, int, int], list[dict]] = {}
    for ref in measured:
        if ref["kind"] == "CAT" or ref.get("categories") or not ref["count"] or ref["count"] <= ds.SMALL_REFERENCE:
            continue
        windows[ref["name"]] = window = _sorted_numeric(columns[ref["name"]])
        size = _reference(ref).values.size
        if window[0].size and size:
            groups.setdefault((size, window[0].size, len(ref.get("edges", []))), []).append(ref)
    stats: dict[str, tuple] = {}
    for group in groups.values():
        if len(group) < 2:
            continue
        exact = [(config.methods.get(r["name"]) or ds.select_method(r["kind"].lower(), r["count"],
                                                                     max(r["unique"], MAX_KNOWN_UNIQUE))) == "ks"
                 for r in group]
        for ref, values in zip(group, _numeric_stats_rows(group, [windows[r["name"]][0] for r in group], exact)):
            stats[ref["name"]] = values
    out = [measure_column(ref, columns[ref["name"]], config.methods.get(ref["name"]), config.thresholds.get(ref["name"]),
                          window=windows.get(ref["name"]), stats=stats.get(ref["name"]))
           for ref in measured]
    features = [c for c in out if c["role"] == "FEATURE"]
    share = sum(c["drift"] for c in features) / len(features) if features else 0.0
    return {"columns": out, "drift_share": share, "dataset_drift": bool(features) and share >= config.drift_share}


def rule_values(measured: dict, config: MonitorConfig) -> dict[str, tuple[bool, float | None, float | None]]:
    """Per alert rule: (breaking?, value, threshold) for one measured window."""
    out = {"dataset_drift": (measured["dataset_drift"], measured["drift_share"], config.drift_share)}
    pred = [c for c in measured["columns"] if c["role"] == "PREDICTION"]
    if pred:
        c = pred[0]
        out["prediction_drift"] = (c["drift"], c["score"], c["threshold"])
    return out


def step_alerts(state: dict, measured: dict, config: MonitorConfig, window: int, model: str,
                deployment: str) -> tuple[dict, list[dict]]:
    """Advance the hysteresis ``state`` (rule -> {open, on, off}) by one window; return (state, changes).

    A change is an AlertChanged payload (without envelope). Pure.
    """
    state = {k: dict(v) for k, v in state.items()}
    changes = []
    for rule, (breaking, value, threshold) in rule_values(measured, config).items():
        s = state.setdefault(rule, {"open": None, "on": 0, "off": 0})
        if breaking:
            s["on"], s["off"] = s["on"] + 1, 0
        else:
            s["on"], s["off"] = 0, s["off"] + 1
        base = {"model": model, "deployment": deployment, "rule": rule, "severity": "warning", "window": window,
                "value": _nan_to_none(value) if value is not None else None, "threshold": threshold}
        if s["open"] is None and s["on"] >= config.raise_after:
            s["open"] = f"{model}/{deployment}/{rule}/{window}"
            what = (f"{measured['drift_share']:.0%} of features drifted (threshold {config.drift_share:.0%})"
                    if rule == "dataset_drift" else f"prediction drift: score {value} vs threshold {threshold}")
            changes.append({**base, "alert_id": s["open"], "state": "RAISED",
                            "message": f"{model}/{deployment}: {what} in window {window}"})
        elif s["open"] is not None and s["off"] >= config.resolve_after:
            changes.append({**base, "alert_id": s["open"], "state": "RESOLVED",
                            "message": f"{model}/{deployment}: {rule} calm for {s['off']} window(s)"})
            s["open"] = None
    return state, changes
