"""modelog.drift: every statistic against scipy/numpy computed directly, hand-worked PSI and
bin edges, Evidently's method rule at its boundaries, edge cases and errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

import modelog.drift as drift
from modelog import ValidationError
from modelog.drift import stats as ds

Q = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
TIGHT = 1e-12


def close(actual: float, expected: float, rel: float = TIGHT) -> None:
    assert actual == pytest.approx(expected, rel=rel), (actual, expected)


# --- independent reference computations -----------------------------------------------------


def ref_bins(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts over the reference's unique 0.1..0.9 quantiles, right-closed, via pandas.cut."""
    edges = np.unique(np.quantile(reference, Q))
    bins = [-np.inf, *edges, np.inf]
    count = lambda x: pd.cut(pd.Series(x), bins, right=True).value_counts(sort=False).to_numpy()  # noqa: E731
    return count(reference), count(current)


def ref_fill(share: np.ndarray) -> np.ndarray:
    share = share.astype(float).copy()
    smallest = share[share > 0].min()
    share[share == 0] = smallest / 1e6 if smallest <= 1e-4 else 1e-4
    return share


def ref_psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    r = ref_fill(ref_counts / ref_counts.sum())
    c = ref_fill(cur_counts / cur_counts.sum())
    return float(np.sum((r - c) * np.log(r / c)))


def ref_js(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    return float(distance.jensenshannon(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()))


def ref_wasserstein_norm(reference: np.ndarray, current: np.ndarray) -> float:
    return stats.wasserstein_distance(reference, current) / max(np.std(reference, ddof=0), 1e-3)


def ref_z_p(x1: int, n1: int, x2: int, n2: int) -> float:
    p1, p2, pooled = x1 / n1, x2 / n2, (x1 + x2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return 2 * (1 - stats.norm.cdf(abs(z)))


def row_of(out: pd.DataFrame, column: str) -> pd.Series:
    rows = out[out["column"] == column]
    assert len(rows) == 1
    return rows.iloc[0]


def assert_numeric_row(row: pd.Series, reference: np.ndarray, current: np.ndarray) -> None:
    """Every numeric statistic of ``row`` equals the direct scipy/numpy computation."""
    r = reference[~np.isnan(reference)]
    c = current[~np.isnan(current)]
    ks = stats.ks_2samp(r, c)
    close(row.ks_stat, ks.statistic)
    close(row.ks_p, ks.pvalue)
    close(row.wasserstein_norm, ref_wasserstein_norm(r, c))
    rc, cc = ref_bins(r, c)
    close(row.psi, ref_psi(rc, cc))
    close(row.js, ref_js(rc, cc))
    assert row.n_ref == r.size and row.n_cur == c.size


def numeric_pair(rng, n_ref, n_cur, cur_loc=0.0, cur_scale=1.0):
    return rng.normal(0.0, 1.0, n_ref), rng.normal(cur_loc, cur_scale, n_cur)


# --- hand-computed bins and PSI ---------------------------------------------------------------


def test_quantile_edges_interpolate_linearly():
    # (n - 1) * q = 0.9, 1.8, ... over 1..10 puts the edges at 1.9, 2.8, ..., 9.1
    edges = ds.quantile_edges(np.arange(1.0, 11.0))
    assert edges.tolist() == pytest.approx([1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1], rel=TIGHT)


def test_quantile_edges_collapse_duplicates_and_bins_are_right_closed_and_open_ended():
    # quantiles of five 0s and five 10s: 0, 0, 0, 0, 5, 10, 10, 10, 10 -> edges 0, 5, 10
    reference = np.array([0.0] * 5 + [10.0] * 5)
    edges = ds.quantile_edges(reference)
    assert edges.tolist() == [0.0, 5.0, 10.0]
    current = np.array([-1e9, 0.0, 0.5, 5.0, 7.0, 10.0, 11.0, 1e9])
    # (-inf, 0] gets -1e9 and 0; (0, 5] gets 0.5 and 5; (5, 10] gets 7 and 10; (10, inf) the rest
    assert ds.bin_counts(current, edges).tolist() == [2, 2, 2, 2]
    assert ds.bin_counts(np.sort(current), edges, is_sorted=True).tolist() == [2, 2, 2, 2]
    assert ds.bin_counts(reference, edges).tolist() == [5, 0, 5, 0]


def test_constant_reference_has_one_edge_and_two_bins():
    edges = ds.quantile_edges(np.full(50, 3.0))
    assert edges.tolist() == [3.0]
    assert ds.bin_counts(np.array([2.0, 3.0, 3.0, 3.5]), edges).tolist() == [3, 1]


def test_psi_replaces_zero_shares_by_1e_4_without_renormalising():
    # reference shares .5 .5 0 -> .5 .5 1e-4 (sum > 1 kept); current .2 .6 .2
    expected = (0.5 - 0.2) * math.log(0.5 / 0.2) + (0.5 - 0.6) * math.log(0.5 / 0.6)
    expected += (1e-4 - 0.2) * math.log(1e-4 / 0.2)
    close(ds.psi_from_counts([5, 5, 0], [2, 6, 2]), expected)
    close(ds.psi_from_shares(np.array([0.5, 0.5, 0.0]), np.array([0.2, 0.6, 0.2])), expected)


def test_psi_uses_min_nonzero_over_1e6_when_smallest_share_is_at_most_1e_4():
    # reference 1/20000 = 5e-5 <= 1e-4 -> its zero becomes 5e-11; current's smallest is .5 -> 1e-4
    r = [5e-5, 1 - 5e-5, 5e-11]
    c = [1e-4, 0.5, 0.5]
    expected = sum((a - b) * math.log(a / b) for a, b in zip(r, c))
    close(ds.psi_from_counts([1, 19999, 0], [0, 10, 10]), expected)
    # exactly 1e-4 is "at most": the zero becomes 1e-4 / 1e6
    assert ds.fill_zero_shares(np.array([1 / 10000, 1 - 1 / 10000, 0.0]))[2] == pytest.approx(1e-10, rel=TIGHT)
    assert ds.fill_zero_shares(np.array([0.00011, 0.99989, 0.0]))[2] == 1e-4


def test_psi_and_js_of_identical_counts_are_zero_and_empty_is_nan():
    assert ds.psi_from_counts([3, 0, 7], [3, 0, 7]) == 0.0
    assert ds.js_from_counts([3, 0, 7], [6, 0, 14]) == 0.0
    assert math.isnan(ds.psi_from_counts([3, 7], [0, 0]))
    assert math.isnan(ds.js_from_counts([0, 0], [3, 7]))


def test_raw_array_helpers_equal_count_helpers():
    rng = np.random.default_rng(11)
    r, c = numeric_pair(rng, 3000, 2000, 0.3)
    rc, cc = ref_bins(r, c)
    close(ds.psi(r, c), ref_psi(rc, cc))
    close(ds.js(r, c), ref_js(rc, cc))
    close(ds.wasserstein_norm(r, c), ref_wasserstein_norm(r, c))
    assert ds.ks(r, c) == (stats.ks_2samp(r, c).statistic, stats.ks_2samp(r, c).pvalue)


def test_two_proportion_z_test_matches_published_value_and_pooled_formula():
    # two_sample_proportion_test(x1=20, n1=300, x2=21, n2=298) -> p = 0.85400567703455788
    close(ds.z_p_from_counts(20, 300, 21, 298), 0.85400567703455788, rel=1e-9)
    close(ds.z_p_from_counts(120, 400, 60, 380), ref_z_p(120, 400, 60, 380), rel=1e-9)
    assert ds.z_p_from_counts(0, 10, 0, 20) == 1.0
    assert ds.z_p_from_counts(10, 10, 20, 20) == 1.0


def test_chi2_p_uses_yates_only_for_two_categories():
    two = (np.array([40, 60]), np.array([55, 45]))
    close(ds.chi2_p_from_counts(*two), stats.chi2_contingency(np.vstack(two), correction=True).pvalue)
    assert ds.chi2_p_from_counts(*two) != pytest.approx(
        stats.chi2_contingency(np.vstack(two), correction=False).pvalue, rel=1e-3
    )
    three = (np.array([40, 30, 30]), np.array([50, 25, 45]))
    close(ds.chi2_p_from_counts(*three), stats.chi2_contingency(np.vstack(three), correction=False).pvalue)
    assert ds.chi2_p_from_counts(np.array([5]), np.array([9])) == 1.0


def test_js_equals_scipy_s_jensenshannon_to_the_last_bit():
    """js_from_counts does scipy's arithmetic without calling it (the drift processor's cost per column): the
    same number exactly, zero bins and identical samples included."""
    rng = np.random.default_rng(5)
    for _ in range(300):
        k = int(rng.integers(1, 15))
        ref = rng.integers(0, int(rng.choice([2, 40, 5000])), k)
        cur = ref.copy() if rng.random() < 0.1 else rng.integers(0, int(rng.choice([2, 40, 5000])), k)
        if ref.sum() == 0 or cur.sum() == 0:
            assert math.isnan(ds.js_from_counts(ref, cur))
            continue
        with np.errstate(invalid="ignore"):
            want = float(distance.jensenshannon(ref / ref.sum(), cur / cur.sum()))
        assert ds.js_from_counts(ref, cur) == (0.0 if math.isnan(want) else want), (ref, cur)


def test_chi2_p_equals_scipy_s_chi2_contingency_on_many_tables():
    """chi2_p_from_counts follows scipy's steps without calling it (the drift processor's cost per categorical
    column): the same p-value within rounding, on 2 x K tables of every shape, small counts (Yates at K = 2)
    and categories absent from one side included."""
    rng = np.random.default_rng(7)
    for _ in range(300):
        k = int(rng.integers(1, 12))
        ref = rng.integers(0, int(rng.choice([3, 50, 5000])), k)
        cur = rng.integers(0, int(rng.choice([3, 50, 5000])), k)
        if ref.sum() == 0 or cur.sum() == 0:
            assert math.isnan(ds.chi2_p_from_counts(ref, cur))
            continue
        seen = (ref + cur) > 0
        table = np.vstack([ref[seen], cur[seen]])
        expected = 1.0 if table.shape[1] == 1 else stats.chi2_contingency(table).pvalue
        assert ds.chi2_p_from_counts(ref, cur) == pytest.approx(expected, rel=1e-10, abs=1e-300), (ref, cur)


def test_chisquare_method_is_goodness_of_fit_against_scaled_reference():
    ref, cur = np.array([50, 30, 20]), np.array([70, 80, 50])
    expected = stats.chisquare(cur, ref * (cur.sum() / ref.sum())).pvalue
    close(ds.chisquare_p_from_counts(ref, cur), expected)
    assert ds.chisquare_p_from_counts(np.array([50, 30, 0]), np.array([50, 30, 1])) == 0.0


# --- compare(): numeric scenarios -------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "cur_loc", "cur_scale", "drifted"),
    [("no_drift", 0.0, 1.0, False), ("mean_shift", 0.5, 1.0, True), ("variance_change", 0.0, 2.0, True)],
)
def test_numeric_statistics_equal_scipy(scenario, cur_loc, cur_scale, drifted):
    rng = np.random.default_rng(1)
    r, c = numeric_pair(rng, 5000, 4000, cur_loc, cur_scale)
    row = row_of(drift.compare(pd.DataFrame({"x": r}), pd.DataFrame({"x": c})), "x")
    assert_numeric_row(row, r, c)
    assert (row.kind, row.method, row.threshold) == ("num", "wasserstein", 0.1)
    assert row.score == row.wasserstein_norm
    assert bool(row.drift) is drifted
    assert math.isnan(row.chi2_p)


def test_heavy_tails_student_t_df2():
    rng = np.random.default_rng(2)
    r, c = rng.standard_t(2, 8000), rng.standard_t(2, 8000) * 1.5
    row = row_of(drift.compare(pd.DataFrame({"t": r}), pd.DataFrame({"t": c})), "t")
    assert_numeric_row(row, r, c)


def test_large_samples_use_scipys_asymptotic_ks_exactly():
    rng = np.random.default_rng(3)
    r, c = numeric_pair(rng, 30_000, 12_000, 0.02)
    row = row_of(drift.compare(pd.DataFrame({"x": r}), pd.DataFrame({"x": c})), "x")
    assert_numeric_row(row, r, c)


def test_small_samples_use_exact_ks():
    rng = np.random.default_rng(4)
    r, c = numeric_pair(rng, 30, 30, 1.0)
    row = row_of(drift.compare(pd.DataFrame({"x": r}), pd.DataFrame({"x": c})), "x")
    assert_numeric_row(row, r, c)
    assert row.method == "ks" and row.score == row.ks_p and row.threshold == 0.05
    assert row.ks_p == stats.ks_2samp(r, c, method="exact").pvalue
    assert row.ks_p < 0.05 and row.drift


def test_nan_heavy_columns_drop_nans_and_report_missing_shares():
    rng = np.random.default_rng(5)
    r, c = numeric_pair(rng, 4000, 4000, 0.2)
    r[rng.random(4000) < 0.5] = np.nan
    c[::2] = np.nan
    row = row_of(drift.compare(pd.DataFrame({"x": r}), pd.DataFrame({"x": c})), "x")
    assert_numeric_row(row, r, c)
    assert row.missing_ref == np.isnan(r).mean() and row.missing_cur == 0.5
    assert row.n_ref == 4000 - np.isnan(r).sum() and row.n_cur == 2000


def test_infinities_count_as_missing_in_numeric_columns():
    r = np.array([1.0, 2.0, np.inf, 3.0, 4.0, 5.0, 6.0, 7.0])
    c = np.array([1.0, -np.inf, 2.0, np.nan, 3.0, 4.0, 5.0, 6.0])
    row = row_of(drift.compare(pd.DataFrame({"x": r}), pd.DataFrame({"x": c})), "x")
    assert (row.n_ref, row.n_cur, row.missing_ref, row.missing_cur) == (7, 6, 1 / 8, 2 / 8)
    assert_numeric_row(row, r[np.isfinite(r)], c[np.isfinite(c)])


def test_constant_columns_use_the_std_floor():
    same = drift.compare(pd.DataFrame({"k": np.full(200, 3.0)}), pd.DataFrame({"k": np.full(100, 3.0)}))
    row = row_of(same, "k")
    assert (row.ks_stat, row.ks_p, row.wasserstein_norm, row.psi, row.js) == (0.0, 1.0, 0.0, 0.0, 0.0)
    assert (row.method, row.score, bool(row.drift)) == ("z", 1.0, False)
    moved = row_of(drift.compare(pd.DataFrame({"k": np.full(200, 3.0)}), pd.DataFrame({"k": np.full(100, 3.5)})), "k")
    close(moved.wasserstein_norm, 0.5 / 1e-3)
    close(moved.wasserstein_norm, stats.wasserstein_distance(np.full(200, 3.0), np.full(100, 3.5)) / 1e-3)
    close(moved.psi, ref_psi(np.array([200, 0]), np.array([0, 100])))
    close(moved.score, ref_z_p(0, 200, 100, 100))
    assert moved.drift


def test_integer_codes_with_kind_int_get_numeric_statistics_and_chi2():
    rng = np.random.default_rng(6)
    r = rng.integers(0, 8, 900)
    c = rng.choice(8, 700, p=[0.2, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    out = drift.compare(pd.DataFrame({"code": r}), pd.DataFrame({"code": c}), {"code": "int"})
    row = row_of(out, "code")
    assert row.kind == "int"
    assert_numeric_row(row, r.astype(float), c.astype(float))
    values = np.union1d(r, c)
    table = np.vstack([[np.sum(r == v) for v in values], [np.sum(c == v) for v in values]])
    close(row.chi2_p, stats.chi2_contingency(table).pvalue)
    assert row.method == "ks" and row.score == row.ks_p
    inferred = row_of(drift.compare(pd.DataFrame({"code": r}), pd.DataFrame({"code": c})), "code")
    assert inferred.kind == "num" and math.isnan(inferred.chi2_p)


# --- compare(): categorical scenarios ---------------------------------------------------------


def test_new_category_in_current():
    rng = np.random.default_rng(7)
    r = rng.choice(np.array(["a", "b", "c"], dtype=object), 600)
    c = rng.choice(np.array(["a", "b", "c", "d"], dtype=object), 500, p=[0.3, 0.3, 0.3, 0.1])
    row = row_of(drift.compare(pd.DataFrame({"s": r}), pd.DataFrame({"s": c})), "s")
    cats = ["a", "b", "c", "d"]
    rc = np.array([np.sum(r == k) for k in cats])
    cc = np.array([np.sum(c == k) for k in cats])
    assert rc[3] == 0
    close(row.psi, ref_psi(rc, cc))
    close(row.js, ref_js(rc, cc))
    close(row.chi2_p, stats.chi2_contingency(np.vstack([rc, cc])).pvalue)
    assert math.isnan(row.ks_stat) and math.isnan(row.ks_p) and math.isnan(row.wasserstein_norm)
    # Evidently's chisquare: expected 0 for "d" with observed > 0 -> infinite statistic, p = 0
    assert (row.kind, row.method, row.score, bool(row.drift)) == ("cat", "chisquare", 0.0, True)


def test_categorical_without_new_category_scores_evidently_chisquare():
    rng = np.random.default_rng(8)
    r = rng.choice(np.array(["x", "y", "z"], dtype=object), 700, p=[0.5, 0.3, 0.2])
    c = rng.choice(np.array(["x", "y", "z"], dtype=object), 300, p=[0.4, 0.3, 0.3])
    row = row_of(drift.compare(pd.DataFrame({"s": r}), pd.DataFrame({"s": c})), "s")
    rc = np.array([np.sum(r == k) for k in "xyz"])
    cc = np.array([np.sum(c == k) for k in "xyz"])
    close(row.score, stats.chisquare(cc, rc * (cc.sum() / rc.sum())).pvalue)
    assert row.score != pytest.approx(row.chi2_p, rel=1e-3)


def test_proportion_shift_uses_z_test():
    rng = np.random.default_rng(9)
    r = pd.Series(rng.random(800) < 0.30)
    c = pd.Series(rng.random(600) < 0.40)
    row = row_of(drift.compare(pd.DataFrame({"b": r}), pd.DataFrame({"b": c})), "b")
    assert (row.kind, row.method) == ("cat", "z")
    # Evidently counts "not the first sorted key" (False < True): the True share
    close(row.score, ref_z_p(int(r.sum()), 800, int(c.sum()), 600), rel=1e-9)
    assert row.drift
    table = np.vstack([[800 - r.sum(), r.sum()], [600 - c.sum(), c.sum()]])
    close(row.chi2_p, stats.chi2_contingency(table, correction=True).pvalue)


def test_categorical_missing_values_none_nan_and_category_dtype():
    r = pd.Series(["a", None, "b", np.nan, "a", "b"] * 50, dtype="category")
    c = pd.Series(["a", "a", None, "b"] * 50, dtype=object)
    row = row_of(drift.compare(pd.DataFrame({"s": r}), pd.DataFrame({"s": c})), "s")
    assert (row.n_ref, row.n_cur, row.missing_ref, row.missing_cur) == (200, 150, 1 / 3, 0.25)
    close(row.js, ref_js(np.array([100, 100]), np.array([100, 50])))


# --- method choice ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "n_ref", "n_unique", "method"),
    [
        ("num", 1000, 6, "ks"),
        ("num", 1000, 5, "chisquare"),
        ("num", 1000, 3, "chisquare"),
        ("num", 1000, 2, "z"),
        ("int", 1000, 6, "ks"),
        ("cat", 1000, 6, "chisquare"),
        ("cat", 1000, 3, "chisquare"),
        ("cat", 1000, 2, "z"),
        ("num", 1001, 6, "wasserstein"),
        ("num", 1001, 5, "jensenshannon"),
        ("int", 1001, 2, "jensenshannon"),
        ("cat", 1001, 6, "jensenshannon"),
        ("cat", 1001, 2, "jensenshannon"),
    ],
)
def test_select_method_follows_evidentlys_rule(kind, n_ref, n_unique, method):
    assert ds.select_method(kind, n_ref, n_unique) == method


@pytest.mark.parametrize(
    ("n_unique", "small", "large"),
    [(2, "z", "jensenshannon"), (3, "chisquare", "jensenshannon"), (5, "chisquare", "jensenshannon"),
     (6, "ks", "wasserstein")],
)
def test_compare_counts_reference_after_nan_drop_and_uniques_over_both(n_unique, small, large):
    values = np.arange(n_unique - 1, dtype=float)
    # reference holds n_unique - 1 values, the current one more: uniques counted over both samples
    ref_small = np.r_[np.resize(values, 1000), np.nan]  # 1001 rows, 1000 after dropping the NaN
    ref_large = np.resize(values, 1001)
    cur = np.resize(np.arange(n_unique, dtype=float), 500)
    out_small = drift.compare(pd.DataFrame({"x": ref_small}), pd.DataFrame({"x": cur}))
    out_large = drift.compare(pd.DataFrame({"x": ref_large}), pd.DataFrame({"x": cur}))
    assert (out_small.method[0], out_small.n_ref[0]) == (small, 1000)
    assert (out_large.method[0], out_large.n_ref[0]) == (large, 1001)
    expected_threshold = {"z": 0.05, "chisquare": 0.05, "ks": 0.05, "jensenshannon": 0.1, "wasserstein": 0.1}
    assert out_small.threshold[0] == expected_threshold[small]
    assert out_large.threshold[0] == expected_threshold[large]


def test_numeric_chisquare_and_jensenshannon_scores_on_few_values():
    rng = np.random.default_rng(10)
    r = rng.integers(0, 4, 1000).astype(float)
    c = rng.integers(0, 4, 400).astype(float)
    row = row_of(drift.compare(pd.DataFrame({"x": r}), pd.DataFrame({"x": c})), "x")
    rc = np.array([np.sum(r == v) for v in range(4)])
    cc = np.array([np.sum(c == v) for v in range(4)])
    assert row.method == "chisquare"
    close(row.score, stats.chisquare(cc, rc * (cc.sum() / rc.sum())).pvalue)
    big = np.r_[r, r[:1]]
    row = row_of(drift.compare(pd.DataFrame({"x": big}), pd.DataFrame({"x": c})), "x")
    assert row.method == "jensenshannon" and row.score == row.js
    close(row.js, ref_js(*ref_bins(big, c)))


def test_overrides_replace_method_and_threshold():
    rng = np.random.default_rng(12)
    r, c = numeric_pair(rng, 2000, 2000, 0.5)
    frames = pd.DataFrame({"x": r, "y": r}), pd.DataFrame({"x": c, "y": c})
    assert drift.compare(*frames).method.tolist() == ["wasserstein", "wasserstein"]
    out = drift.compare(*frames, methods={"x": "psi", "y": "ks"}, thresholds={"y": 1e-300})
    x, y = row_of(out, "x"), row_of(out, "y")
    assert (x.method, x.score, x.threshold) == ("psi", x.psi, 0.1)
    assert x.psi >= 0.1 and x.drift
    assert (y.method, y.score, y.threshold) == ("ks", y.ks_p, 1e-300)
    assert y.ks_p < 0.05 and not y.drift


# --- edge cases -------------------------------------------------------------------------------


def test_all_missing_column_has_null_statistics_and_no_drift():
    ref = pd.DataFrame({"x": [np.nan] * 5, "s": [None] * 5})
    cur = pd.DataFrame({"x": [1.0, 2.0, 3.0], "s": ["a", "b", "c"]})
    out = drift.compare(ref, cur)
    stats_cols = ["ks_stat", "ks_p", "psi", "js", "wasserstein_norm", "chi2_p", "score"]
    assert out[stats_cols].isna().all().all()
    assert not out.drift.any()
    assert out.method.tolist() == ["chisquare", "chisquare"]
    assert out.kind.tolist() == ["num", "cat"]
    assert out.missing_ref.tolist() == [1.0, 1.0] and out.n_ref.tolist() == [0, 0]


def test_empty_current_frame():
    ref = pd.DataFrame({"x": np.arange(10.0), "s": list("ababababab")})
    cur = ref.iloc[0:0]
    out = drift.compare(ref, cur)
    assert out.n_cur.tolist() == [0, 0] and out.missing_cur.isna().all()
    assert out.score.isna().all() and not out.drift.any()
    assert out.method.tolist() == ["ks", "z"]


def test_output_columns_and_dtypes():
    ref = pd.DataFrame({"a": [1.0, 2.0], "b": ["u", "v"]})
    out = drift.compare(ref, pd.DataFrame({"a": [1.0, 3.0], "b": ["u", "u"]}))
    assert tuple(out.columns) == drift.COLUMNS
    assert out.n_ref.dtype == np.int64 and out.drift.dtype == bool
    assert all(out[c].dtype == np.float64 for c in ("ks_p", "psi", "js", "chi2_p", "score", "threshold"))
    assert out.column.tolist() == ["a", "b"]
    empty = drift.compare(pd.DataFrame(), pd.DataFrame())
    assert tuple(empty.columns) == drift.COLUMNS and len(empty) == 0


def test_public_surface():
    assert sorted(drift.__all__) == ["COLUMNS", "KINDS", "METHODS", "compare"]


def test_js_of_nearly_equal_counts_is_finite_and_non_negative():
    value = ds.js_from_counts(np.array([10**9, 10**9 + 1]), np.array([10**9 + 1, 10**9]))
    assert 0.0 <= value < 1e-8


# --- errors -----------------------------------------------------------------------------------


def _frames():
    return pd.DataFrame({"x": [1.0, 2.0], "s": ["a", "b"]}), pd.DataFrame({"x": [1.0, 2.5], "s": ["a", "a"]})


@pytest.mark.parametrize(
    ("call", "field", "words"),
    [
        (lambda r, c: drift.compare(r, c.drop(columns="s")), "current.columns", "'s' is in reference"),
        (lambda r, c: drift.compare(r.drop(columns="x"), c), "reference.columns", "'x' is in current"),
        (lambda r, c: drift.compare(r, c, {"nope": "num"}), "kinds['nope']", "names no column"),
        (lambda r, c: drift.compare(r, c, {"x": "float"}), "kinds['x']", "must be one of num, int, cat"),
        (lambda r, c: drift.compare(r, c, methods={"x": "kl"}), "methods['x']", "must be one of"),
        (lambda r, c: drift.compare(r, c, methods={"s": "ks"}), "methods['s']", "needs kind 'num' or 'int'"),
        (lambda r, c: drift.compare(r, c, thresholds={"x": float("nan")}), "thresholds['x']", "finite number"),
        (lambda r, c: drift.compare(r, c, thresholds={"x": True}), "thresholds['x']", "finite number"),
        (lambda r, c: drift.compare(r, c, {"x": "int"}), "current['x']", "whole numbers"),
        (lambda r, c: drift.compare(r, c, {"s": "num"}), "reference['s']", "needs numbers"),
        (lambda r, c: drift.compare(r.values, c), "reference", "pandas DataFrame"),
    ],
)
def test_errors_name_field_and_rule(call, field, words):
    with pytest.raises(ValidationError) as info:
        call(*_frames())
    assert info.value.field == field
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)


def test_datetime_and_conflicting_dtypes_need_explicit_kinds():
    times = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=3)})
    with pytest.raises(ValidationError, match="datetime-like"):
        drift.compare(times, times)
    assert drift.compare(times, times, {"t": "cat"}).method.tolist() == ["chisquare"]
    with pytest.raises(ValidationError, match="infer different kinds"):
        drift.compare(pd.DataFrame({"v": [1, 2]}), pd.DataFrame({"v": ["1", "2"]}))
    # a side that is entirely missing does not vote
    out = drift.compare(pd.DataFrame({"v": [1, 2]}), pd.DataFrame({"v": [None, None]}, dtype=object))
    assert out.kind.tolist() == ["num"]


def test_drift_verdict_at_the_threshold():
    assert ds.is_drift("ks", 0.05, 0.05) is False and ds.is_drift("ks", 0.0499, 0.05) is True
    assert ds.is_drift("psi", 0.1, 0.1) is True and ds.is_drift("wasserstein", 0.0999, 0.1) is False
    assert ds.is_drift("jensenshannon", float("nan"), 0.1) is False


def test_z_override_on_many_categories_tests_the_first_sorted_category_against_the_rest():
    r = pd.Series(["b"] * 50 + ["a"] * 30 + ["c"] * 20)
    c = pd.Series(["c"] * 60 + ["a"] * 10 + ["b"] * 30)
    row = row_of(drift.compare(pd.DataFrame({"s": r}), pd.DataFrame({"s": c}), methods={"s": "z"}), "s")
    # "a" sorts first: Evidently maps "a" -> 0 and every other category -> 1
    close(row.score, ref_z_p(70, 100, 90, 100), rel=1e-9)
    assert row.method == "z" and row.threshold == 0.05 and row.drift


def test_jensenshannon_method_scores_few_valued_numeric_columns_per_value():
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"lvl": rng.choice([0.0, 1.0, 2.0], 5000, p=[0.9, 0.05, 0.05])})
    cur = pd.DataFrame({"lvl": rng.choice([0.0, 1.0, 2.0], 5000, p=[0.9, 0.01, 0.09])})
    row = drift.compare(ref, cur).iloc[0]
    assert row["method"] == "jensenshannon"
    r = np.bincount(ref["lvl"].astype(int), minlength=3) / 5000
    c = np.bincount(cur["lvl"].astype(int), minlength=3) / 5000
    assert row["score"] == pytest.approx(jensenshannon(r, c), rel=1e-12)
    assert row["score"] != pytest.approx(row["js"])  # the js column keeps the quantile bins
