"""Window statistics (the drift processor's pure core) agree with modelog.drift.compare, and the
alert hysteresis opens and closes one incident per episode."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from modelog.drift.profile import profile_frame
from modelog.drift import compare
from modelog.processors.drift_core import MonitorConfig, measure_window, step_alerts

STATS = ("n_ref", "n_cur", "ks_stat", "ks_p", "psi", "js", "wasserstein_norm", "chi2_p", "score")


def frames(n_ref: int, n_cur: int, shift: float, seed: int = 7):
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({
        "x": rng.normal(0, 1, n_ref),
        "heavy": rng.standard_t(2, n_ref),
        "code": rng.integers(0, 4, n_ref).astype(float),
        "flag": rng.integers(0, 2, n_ref).astype(float),
        "city": rng.choice(["a", "b", "c"], n_ref, p=[0.5, 0.3, 0.2]),
        "pred": rng.random(n_ref),
    })
    cur = pd.DataFrame({
        "x": rng.normal(shift, 1, n_cur),
        "heavy": rng.standard_t(2, n_cur) * (1 + shift),
        "code": rng.integers(0, 4 + int(shift > 0), n_cur).astype(float),
        "flag": (rng.random(n_cur) < 0.5 + shift / 4).astype(float),
        "city": rng.choice(["a", "b", "c", "d"], n_cur, p=[0.4, 0.3, 0.2, 0.1] if shift else [0.5, 0.3, 0.2, 0.0]),
        "pred": rng.random(n_cur) ** (1 + shift),
    })
    ref.loc[::17, "x"] = np.nan
    cur.loc[::11, "x"] = np.nan
    return ref, cur


def window_columns(cur: pd.DataFrame) -> dict[str, list]:
    out = {}
    for name in cur.columns:
        s = cur[name]
        out[name] = [None if (isinstance(v, float) and math.isnan(v)) else v for v in s.tolist()]
    return out


@pytest.mark.parametrize("n_ref, n_cur, shift", [(300, 200, 0.0), (800, 400, 0.6), (3000, 1000, 0.0),
                                                 (5000, 1500, 0.5)])
def test_window_statistics_equal_offline_compare_when_the_reference_fits_the_sample(n_ref, n_cur, shift):
    ref, cur = frames(n_ref, n_cur, shift)
    profile = profile_frame(ref, prediction="pred", sample_size=10_000)
    measured = measure_window(profile, window_columns(cur), MonitorConfig())
    offline = compare(ref, cur).set_index("column")
    assert [c["column"] for c in measured["columns"]] == list(ref.columns)
    for c in measured["columns"]:
        row = offline.loc[c["column"]]
        assert c["method"] == row["method"], c["column"]
        assert c["drift"] == bool(row["drift"]), c["column"]
        for key in STATS:
            want, got = row[key], c[key]
            if isinstance(want, float) and math.isnan(want):
                assert got is None, (c["column"], key)
            elif key == "ks_p" and n_ref > 1000:  # informational there: asymptotic instead of exact
                assert got == pytest.approx(want, abs=1e-2), (c["column"], key)
            else:
                assert got == pytest.approx(want, rel=1e-9, abs=1e-12), (c["column"], key)
        assert c["missing_cur"] == pytest.approx(row["missing_cur"])
    features = [c for c in measured["columns"] if c["role"] == "FEATURE"]
    assert measured["drift_share"] == pytest.approx(sum(c["drift"] for c in features) / len(features))


def test_large_reference_keeps_binned_statistics_exact():
    ref, cur = frames(30_000, 1000, 0.5)
    profile = profile_frame(ref, prediction="pred", sample_size=2000)
    measured = {c["column"]: c for c in measure_window(profile, window_columns(cur), MonitorConfig())["columns"]}
    offline = compare(ref, cur).set_index("column")
    for col in ("x", "heavy", "city", "code"):
        assert measured[col]["psi"] == pytest.approx(offline.loc[col, "psi"], rel=1e-9)
        assert measured[col]["js"] == pytest.approx(offline.loc[col, "js"], rel=1e-9)
        assert measured[col]["method"] == offline.loc[col, "method"]
    # KS from a 2,000-value sample: close, not equal
    assert measured["x"]["ks_stat"] == pytest.approx(offline.loc["x", "ks_stat"], abs=0.05)
    assert measured["city"]["unseen"] == int((cur["city"] == "d").sum()) > 0


def test_empty_window_column_is_measured_as_unknown_not_drift():
    ref, _ = frames(300, 10, 0.0)
    profile = profile_frame(ref)
    measured = measure_window(profile, {"x": [None, None]}, MonitorConfig())
    (c,) = measured["columns"]
    assert c["score"] is None and c["drift"] is False and c["missing_cur"] == 1.0


def test_alert_hysteresis_one_incident_per_episode():
    cfg = MonitorConfig(raise_after=2, resolve_after=2)
    drifting = {"columns": [], "drift_share": 0.8, "dataset_drift": True}
    calm = {"columns": [], "drift_share": 0.0, "dataset_drift": False}
    sequence = [calm, drifting, calm, drifting, drifting, drifting, calm, drifting, calm, calm, calm, drifting]
    state, log = {}, []
    for w, m in enumerate(sequence):
        state, changes = step_alerts(state, m, cfg, w, "m", "prod")
        log.extend((w, c["state"], c["alert_id"]) for c in changes)
    # raised at the 2nd consecutive drifting window (4), resolved after 2 calm ones (8, 9)
    assert log == [(4, "RAISED", "m/prod/dataset_drift/4"), (9, "RESOLVED", "m/prod/dataset_drift/4")]


def test_prediction_drift_rule_follows_the_prediction_column():
    ref, cur = frames(800, 400, 0.9)
    profile = profile_frame(ref, prediction="pred")
    measured = measure_window(profile, window_columns(cur), MonitorConfig())
    pred = next(c for c in measured["columns"] if c["role"] == "PREDICTION")
    assert pred["column"] == "pred" and pred["drift"] is True, pred  # the 0.9 shift is detected
    _, changes = step_alerts({}, measured, MonitorConfig(), 0, "m", "prod")
    raised = [c for c in changes if c["rule"] == "prediction_drift"]
    assert [(c["state"], c["alert_id"], c["value"], c["threshold"]) for c in raised] == \
        [("RAISED", "m/prod/prediction_drift/0", pred["score"], pred["threshold"])]


def test_prediction_drift_rule_stays_quiet_without_a_shift():
    ref, cur = frames(800, 400, 0.0)
    profile = profile_frame(ref, prediction="pred")
    measured = measure_window(profile, window_columns(cur), MonitorConfig())
    pred = next(c for c in measured["columns"] if c["role"] == "PREDICTION")
    assert pred["drift"] is False, pred
    _, changes = step_alerts({}, measured, MonitorConfig(), 0, "m", "prod")
    assert [c for c in changes if c["rule"] == "prediction_drift"] == []


FORMS = ["continuous", "few integers", "rounded", "far from zero", "disjoint"]


def two_samples(rng, form):
    n_ref, n_cur = int(rng.integers(1, 3000)), int(rng.integers(1, 1500))
    if form == "continuous":
        return rng.normal(size=n_ref), rng.normal(0.3, 1.2, size=n_cur)
    if form == "few integers":
        return rng.integers(0, 5, n_ref).astype(float), rng.integers(0, 7, n_cur).astype(float)
    if form == "rounded":
        return np.round(rng.normal(size=n_ref), 1), np.round(rng.normal(size=n_cur), 1)
    if form == "far from zero":  # timestamps: large values, small spread
        return 1.7e9 + rng.normal(0, 1e3, n_ref), 1.7e9 + rng.normal(10, 1e3, n_cur)
    return rng.normal(size=n_ref), rng.normal(50, 1, size=n_cur)


@pytest.mark.parametrize("form", FORMS)
def test_the_windowed_wasserstein_equals_scipy_s_ties_and_all(form):
    """The drift processor integrates |F_u - F_v| between the window's values from the reference's prepared
    running area (processors/drift_core.py, _wasserstein_windowed) instead of merging the samples: scipy's
    distance within rounding, where equal values are common too and far from zero."""
    from scipy import stats

    from modelog.processors.drift_core import _prepare, _wasserstein_windowed

    rng = np.random.default_rng(11)
    for _ in range(50):
        ref, cur = two_samples(rng, form)
        got = _wasserstein_windowed(_prepare(np.sort(ref)), np.sort(cur))
        assert got == pytest.approx(stats.wasserstein_distance(ref, cur), rel=1e-11, abs=1e-15)


@pytest.mark.parametrize("form", FORMS)
def test_the_windowed_ks_equals_scipy_s_to_the_last_bit(form):
    """KS from the window's positions in the reference (processors/drift_core.py, _ks_windowed): the same
    statistic as ``scipy.stats.ks_2samp(method="asymp")`` bit for bit, ties included, and with ``exact_asymp``
    the same p-value; the cheap p-value (Stephens' correction of Kolmogorov's limit), used only where the
    reference is above 1,000 values and KS does not decide, stays within 0.015 of it there."""
    from scipy import stats

    from modelog.processors.drift_core import _ks_windowed, _prepare

    rng = np.random.default_rng(12)
    for _ in range(50):
        ref, cur = two_samples(rng, form)
        want = stats.ks_2samp(ref, cur, method="asymp")
        prepared, window = _prepare(np.sort(ref)), np.sort(cur)
        right = np.searchsorted(prepared.values, window, side="right")
        d, p = _ks_windowed(prepared, window, right, exact_asymp=True)
        assert d == float(want.statistic), (ref.size, cur.size)
        assert p == pytest.approx(float(want.pvalue), rel=1e-12, abs=1e-300)
        d_cheap, p_cheap = _ks_windowed(prepared, window, right, exact_asymp=False)
        assert d_cheap == d
        assert ref.size <= 1000 or abs(p_cheap - p) < 0.015, (ref.size, cur.size, p_cheap, p)


def test_a_window_s_numeric_columns_measured_together_equal_each_measured_alone(monkeypatch):
    """measure_window computes the numeric columns with a large reference together, on rows of 2-D arrays
    (processors/drift_core.py, _numeric_stats_rows): every field of every column equals measure_column's on
    that column alone, to the last bit -- with windows that repeat values or share them with the sample
    (integers), a column whose KS decides (scipy's p-value), missing values (another window size, so another
    group), a column alone in its group, values far from zero and a few-valued column (not batched)."""
    from modelog.processors import drift_core
    from modelog.processors.drift_core import measure_column

    batched = []
    rows = drift_core._numeric_stats_rows

    def counted(refs, windows, exact):
        batched.extend(r["name"] for r in refs)
        return rows(refs, windows, exact)

    monkeypatch.setattr(drift_core, "_numeric_stats_rows", counted)
    rng = np.random.default_rng(21)
    for trial in range(12):
        n = int(rng.integers(1500, 25000))
        ref = pd.DataFrame({f"x{i}": rng.normal(0, 1 + i, n) for i in range(4)})
        ref["ints"] = rng.integers(0, 4000, n).astype(float)
        ref["far"] = 1.7e9 + rng.normal(0, 1e3, n)
        ref["few"] = rng.integers(0, 3, n).astype(float)
        ref["holes"] = rng.normal(size=n)
        m = int(rng.integers(2, 1200))
        cur = pd.DataFrame({c: ref[c].to_numpy()[rng.integers(0, n, m)] for c in ref.columns})
        cur[["x0", "x1", "far"]] += rng.normal(0, 0.5)
        cur.loc[::7, "holes"] = np.nan
        profile = profile_frame(ref)
        columns = {c: cur[c].to_numpy(dtype=np.float64) for c in cur.columns}
        config = MonitorConfig(methods={"x2": "ks"} if trial % 2 else {})
        together = measure_window(profile, columns, config)["columns"]
        alone = [measure_column(p, columns[p["name"]], config.methods.get(p["name"])) for p in profile]
        assert together == alone
    # the normal columns, the integers and the far ones went together in every window; "few" (value counts)
    # and "holes" (its own window size, alone) never
    assert sorted(set(batched)) == ["far", "ints", "x0", "x1", "x2", "x3"] and len(batched) == 12 * 6
