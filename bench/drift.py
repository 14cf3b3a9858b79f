"""Drift benchmark: modelog.drift.compare vs Evidently's DataDriftPreset on the same data.

    .venv/bin/python bench/drift.py [--rows 100000] [--repeat 3] [--seed 20261126] [--out PATH]

Data (seeded, deterministic): --rows reference rows and --rows current rows, 20 numeric
columns (no drift, mean shift, variance change, heavy tails, integer-valued and
low-cardinality, NaN and +-inf) and 5 categorical ones (no drift, proportion shift, a new
category, high cardinality, missing values). The frames go to parquet files once; both
sides read the same files.

modelog: ``modelog.drift.compare(reference, current)`` in this process, timed as the median
of --repeat calls after one warm-up call on a small slice.

Evidently: its own virtualenv, ``bench/.venv-evidently``, created and cached on first use
(Evidently needs pandas < 3; this project's venv has pandas 3). ``bench/_evidently_runner.py``
runs there as a subprocess, reads the same parquet files and times only the computation
(median of --repeat after a warm-up on a small slice) of three variants:

* ``preset``  - ``evidently.Report([evidently.presets.DataDriftPreset()], include_tests=True)``
  (the pinned release's current API), columns declared with ``DataDefinition(numerical_columns=...,
  categorical_columns=...)``; timed: both ``Dataset.from_pandas`` calls + ``Report.run``;
  per-column verdicts from each ``ValueDrift``'s drift test;
* ``legacy``  - ``evidently.legacy`` Report + ``DataDriftPreset`` with a ``ColumnMapping
  (numerical_features=..., categorical_features=...)``, the 0.4/0.6-style API;
* ``stattests`` - Evidently's own per-column drift tests alone (default stattest choice,
  +-inf and NaN dropped as ``get_one_column_drift`` does), no report: the least work
  Evidently can do to reach the same verdicts (for reference; not the target).

Column types given to Evidently are the kinds modelog inferred (num/int -> numerical, cat ->
categorical), so both pick methods by the same rule. The table compares, column by column,
the method, the score (and |difference|) and the verdict against the first variant (and the
verdicts of the others), then the timings and speed-ups; the >= 10x target is marked on the
faster of the two presets. Every column whose method, score or verdict differs gets a
computed diagnosis (decile vs per-value JS bins; Evidently's legacy path keeping +-inf).
Writes bench/results/drift.json (every timing, every column, versions, machine, load).

The Evidently venv is pinned by EVIDENTLY_PINS below plus this interpreter's numpy and
scipy versions; the pins are stored in the venv and a change rebuilds it (about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
EVIDENTLY_VENV = HERE / ".venv-evidently"
EVIDENTLY_RUNNER = HERE / "_evidently_runner.py"
# The pinned Evidently environment. numpy and scipy are pinned to the versions of the running
# interpreter so that both sides call the same scipy (the statistics are scipy's on both sides).
EVIDENTLY_PINS = ["evidently==0.7.23", "pandas==2.3.3", "pyarrow>=15"]
TARGETS = {"speedup_vs_evidently": 10.0, "verdict_agreement": "all columns"}
# Scores equal up to floating-point rounding: |a - b| <= SCORE_RTOL * max(1, |a|, |b|).
SCORE_RTOL = 1e-9


def machine() -> dict:
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


# --- data ------------------------------------------------------------------------------------

# name -> how the reference / current samples are drawn (shown in the table and the JSON).
DESIGN: dict[str, str] = {
    "num_normal": "N(0,1) | same",
    "num_ratio_inf": "LogN(0,1) | LogN(0.2,1), 0.1% +inf, no NaN",
    "num_uniform": "U(0,1) | same",
    "num_lognormal": "LogN(0,1) | same",
    "num_shift_small": "N(0,1) | N(0.05,1)",
    "num_shift": "N(0,1) | N(0.3,1)",
    "num_shift_large": "N(100,15) | N(115,15)",
    "num_var_up": "N(0,1) | N(0,1.5)",
    "num_var_down_small": "N(0,1) | N(0,0.92)",
    "num_t3": "t(3) | same",
    "num_tails_heavier": "t(3) | t(1.5)",
    "num_pareto_tail": "1+Pareto(3) | 1+Pareto(2.2)",
    "num_cauchy_scale": "Cauchy | 1.1*Cauchy",
    "int_poisson": "Poisson(4) int64 | same",
    "int_poisson_shift": "Poisson(4) | Poisson(4.6) int64",
    "int_rating_5": "1..5 p=.1/.2/.4/.2/.1 | .08/.17/.4/.23/.12",
    "int_binary_nan": "0/1 p1=.30 | .36, 1% NaN",
    "int_ordinal_rare_mid": "0/1/2 p=.50/.04/.46 | .47/.10/.43",
    "num_nan_5pct": "N(0,1) 5% NaN | same",
    "num_nan_inf_shift": "N(0,1) 2% NaN | N(0.25,1) 15% NaN +0.1% +-inf",
    "cat_nodrift": "6 cats fixed p | same",
    "cat_prop_shift": "4 cats .40/.30/.20/.10 | .25/.30/.25/.20",
    "cat_new_category": "5 cats | same + 'NEW' 5%",
    "cat_high_card": "50 cats Zipf(1.1) | same",
    "cat_missing_shift": "yes/no p=.6, 3% None | p=.5, 10% None",
}


def _side(rng: np.random.Generator, n: int, current: bool) -> pd.DataFrame:
    """One sample (reference if not ``current``); columns in DESIGN order, drawn in that order."""
    c = current
    cols: dict[str, object] = {}
    cols["num_normal"] = rng.normal(0, 1, n)
    ratio = rng.lognormal(0.2 if c else 0.0, 1, n)  # a ratio feature: x / 0 gives +inf, never NaN
    ratio[rng.uniform(0, 1, n) < 0.001] = np.inf
    cols["num_ratio_inf"] = ratio
    cols["num_uniform"] = rng.uniform(0, 1, n)
    cols["num_lognormal"] = rng.lognormal(0, 1, n)
    cols["num_shift_small"] = rng.normal(0.05 if c else 0.0, 1, n)
    cols["num_shift"] = rng.normal(0.3 if c else 0.0, 1, n)
    cols["num_shift_large"] = rng.normal(115 if c else 100, 15, n)
    cols["num_var_up"] = rng.normal(0, 1.5 if c else 1.0, n)
    cols["num_var_down_small"] = rng.normal(0, 0.92 if c else 1.0, n)
    cols["num_t3"] = rng.standard_t(3, n)
    cols["num_tails_heavier"] = rng.standard_t(1.5 if c else 3, n)
    cols["num_pareto_tail"] = 1 + rng.pareto(2.2 if c else 3.0, n)
    cols["num_cauchy_scale"] = rng.standard_cauchy(n) * (1.1 if c else 1.0)
    cols["int_poisson"] = rng.poisson(4, n).astype(np.int64)
    cols["int_poisson_shift"] = rng.poisson(4.6 if c else 4.0, n).astype(np.int64)
    p5 = [0.08, 0.17, 0.40, 0.23, 0.12] if c else [0.1, 0.2, 0.4, 0.2, 0.1]
    cols["int_rating_5"] = rng.choice(np.arange(1, 6, dtype=np.int64), n, p=p5)
    binary = (rng.uniform(0, 1, n) < (0.36 if c else 0.30)).astype(np.float64)
    binary[rng.uniform(0, 1, n) < 0.01] = np.nan
    cols["int_binary_nan"] = binary
    p3 = [0.47, 0.10, 0.43] if c else [0.50, 0.04, 0.46]
    cols["int_ordinal_rare_mid"] = rng.choice(np.arange(3, dtype=np.int64), n, p=p3)
    x = rng.normal(0, 1, n)
    x[rng.uniform(0, 1, n) < 0.05] = np.nan
    cols["num_nan_5pct"] = x
    x = rng.normal(0.25 if c else 0.0, 1, n)
    x[rng.uniform(0, 1, n) < (0.15 if c else 0.02)] = np.nan
    if c:
        u = rng.uniform(0, 1, n)
        x[u < 0.0005] = np.inf
        x[(u >= 0.0005) & (u < 0.001)] = -np.inf
    cols["num_nan_inf_shift"] = x
    cats6 = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta"], dtype=object)
    cols["cat_nodrift"] = rng.choice(cats6, n, p=[0.3, 0.25, 0.2, 0.1, 0.1, 0.05])
    cats4 = np.array(["north", "south", "east", "west"], dtype=object)
    cols["cat_prop_shift"] = rng.choice(cats4, n, p=[0.25, 0.30, 0.25, 0.20] if c else [0.4, 0.3, 0.2, 0.1])
    cats5 = np.array(["web", "ios", "android", "partner", "store"], dtype=object)
    channel = rng.choice(cats5, n, p=[0.4, 0.25, 0.2, 0.1, 0.05])
    if c:
        channel[rng.uniform(0, 1, n) < 0.05] = "NEW"
    cols["cat_new_category"] = channel
    ranks = np.arange(1, 51)
    zipf = ranks**-1.1 / (ranks**-1.1).sum()
    cols["cat_high_card"] = rng.choice(np.array([f"sku_{i:02d}" for i in ranks], dtype=object), n, p=zipf)
    yes_no = np.where(rng.uniform(0, 1, n) < (0.5 if c else 0.6), "yes", "no").astype(object)
    yes_no[rng.uniform(0, 1, n) < (0.10 if c else 0.03)] = None
    cols["cat_missing_shift"] = yes_no
    frame = pd.DataFrame(cols)
    assert list(frame.columns) == list(DESIGN), "DESIGN and the generator disagree"
    return frame


def make_data(rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current frames of ``rows`` rows each, deterministic in (rows, seed)."""
    ref_seq, cur_seq = np.random.SeedSequence(seed).spawn(2)
    return (_side(np.random.default_rng(ref_seq), rows, current=False),
            _side(np.random.default_rng(cur_seq), rows, current=True))


# --- modelog ---------------------------------------------------------------------------------


def time_modelog(reference: pd.DataFrame, current: pd.DataFrame, repeat: int, warmup_rows: int):
    import modelog.drift

    modelog.drift.compare(reference.head(warmup_rows), current.head(warmup_rows))  # warm-up, not timed
    timings, report = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        report = modelog.drift.compare(reference, current)
        timings.append(time.perf_counter() - t0)
        print(f"  modelog: {timings[-1]:.2f} s", file=sys.stderr, flush=True)
    return timings, report


# --- Evidently -------------------------------------------------------------------------------


def evidently_pins() -> list[str]:
    import scipy

    return [*EVIDENTLY_PINS, f"numpy=={np.__version__}", f"scipy=={scipy.__version__}"]


def ensure_evidently_venv() -> Path:
    """bench/.venv-evidently with the pinned packages; (re)created when missing or pinned differently."""
    python = EVIDENTLY_VENV / "bin" / "python"
    marker = EVIDENTLY_VENV / "modelog-bench-pins.txt"
    pins = evidently_pins()
    wanted = "\n".join(pins) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    base = getattr(sys, "_base_executable", None) or "python3"  # the python3 this venv was made from
    print(f"creating {EVIDENTLY_VENV} ({', '.join(pins)}); once, about a minute ...", file=sys.stderr, flush=True)
    subprocess.run([base, "-m", "venv", "--clear", str(EVIDENTLY_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-qq", "--disable-pip-version-check", *pins], check=True)
    marker.write_text(wanted)
    return python


def run_evidently(python: Path, workdir: Path, spec: dict) -> dict:
    spec_path, out_path = workdir / "spec.json", workdir / "evidently.json"
    spec_path.write_text(json.dumps(spec))
    subprocess.run([str(python), str(EVIDENTLY_RUNNER), "--spec", str(spec_path), "--out", str(out_path)], check=True)
    return json.loads(out_path.read_text())


# --- comparison ------------------------------------------------------------------------------


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


def score_diff(a: float | None, b: float | None) -> float | None:
    """|a - b|; 0 when both are NaN (None), None (not comparable) when only one is."""
    if a is None and b is None:
        return 0.0
    if a is None or b is None:
        return None
    return abs(a - b)


def scores_equal(a: float | None, b: float | None) -> bool:
    d = score_diff(a, b)
    return d is not None and d <= SCORE_RTOL * max(1.0, abs(a or 0.0), abs(b or 0.0))


def diagnose(column: str, ours: dict, theirs: dict, reference: pd.DataFrame, current: pd.DataFrame,
             variant: str) -> str | None:
    """Why a column's score/verdict differs between modelog and an Evidently variant (computed, not assumed)."""
    from modelog.drift import stats as ds

    same_method = ours["method"] == theirs["method"]
    if same_method and scores_equal(ours["score"], theirs["score"]) and ours["drift"] == theirs["drift"]:
        return None
    reasons = []
    sides = {"reference": reference[column], "current": current[column]}
    if ours["kind"] != "cat":
        inf_only = []
        for side, s in sides.items():
            values = s.to_numpy(dtype=np.float64, na_value=np.nan)
            n_inf, n_nan = int(np.isinf(values).sum()), int(np.isnan(values).sum())
            if n_inf and not n_nan:
                inf_only.append(f"{side} {n_inf}")
        if inf_only and variant == "legacy":
            effect = ("score NaN: the std and the Wasserstein distance of data with inf are NaN"
                      if theirs["score"] is None else f"score {fmt(theirs['score'])} instead of {fmt(ours['score'])}")
            reasons.append(
                f"+-inf and no NaN ({', '.join(inf_only)} inf): Evidently's legacy drift table "
                "(get_drift_for_columns) replaces inf by NaN only where the column also holds NaN, so its test "
                f"saw the infinities ({effect})")
        if ours["method"] == "jensenshannon" == theirs["method"]:
            ref = sides["reference"].to_numpy(dtype=np.float64, na_value=np.nan)
            cur = sides["current"].to_numpy(dtype=np.float64, na_value=np.nan)
            ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
            values = np.union1d(ref, cur)
            edges = ds.quantile_edges(ref)
            bins = np.unique(np.searchsorted(edges, values, side="left"))
            if bins.size < values.size:
                reasons.append(
                    f"modelog bins at the reference deciles (edges {np.round(edges, 6).tolist()}) put the "
                    f"{values.size} distinct values {values.tolist()} into {bins.size} bins; Evidently's JS bins "
                    "per distinct value")
    if not same_method and not reasons:
        reasons.append(f"method differs: modelog {ours['method']}, Evidently {theirs['method']}")
    return "; ".join(reasons) or "unexplained difference"


def short(method: str | None) -> str:
    return {"wasserstein": "wass", "jensenshannon": "js", "chisquare": "chi2"}.get(method or "", method or "-")


def fmt(x: float | None) -> str:
    return "nan" if x is None else f"{x:.6g}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000, help="rows per frame (reference and current)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per side; the table reports the median")
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--warmup-rows", type=int, default=2000, help="rows of the untimed warm-up run")
    ap.add_argument("--variants", default="preset,legacy,stattests",
                    help="Evidently variants, comma-separated, of preset, legacy, stattests (first = the table's)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "drift.json")
    args = ap.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    primary = variants[0]

    python = ensure_evidently_venv()
    start_machine = machine()
    with tempfile.TemporaryDirectory(prefix="modelog-bench-drift-") as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        ref_df, cur_df = make_data(args.rows, args.seed)
        ref_path, cur_path = workdir / "reference.parquet", workdir / "current.parquet"
        ref_df.to_parquet(ref_path, index=False)
        cur_df.to_parquet(cur_path, index=False)
        reference, current = pd.read_parquet(ref_path), pd.read_parquet(cur_path)  # what Evidently reads
        data_s = time.perf_counter() - t0
        print(f"data: {args.rows:,} + {args.rows:,} rows x {reference.shape[1]} columns ({data_s:.1f} s)",
              file=sys.stderr, flush=True)

        ml_timings, report = time_modelog(reference, current, args.repeat, args.warmup_rows)
        kinds = dict(zip(report["column"], report["kind"]))
        numerical = [c for c, k in kinds.items() if k in ("num", "int")]
        categorical = [c for c, k in kinds.items() if k == "cat"]
        ev = run_evidently(python, workdir, {
            "reference": str(ref_path), "current": str(cur_path), "numerical": numerical,
            "categorical": categorical, "repeat": args.repeat, "warmup_rows": args.warmup_rows,
            "variants": variants})

    ml_median = statistics.median(ml_timings)
    columns = []
    for row in report.to_dict("records"):
        name = row["column"]
        ours = {"kind": row["kind"], "method": row["method"], "score": _num(row["score"]),
                "threshold": float(row["threshold"]), "drift": bool(row["drift"]),
                "n_ref": int(row["n_ref"]), "n_cur": int(row["n_cur"]),
                "missing_ref": _num(row["missing_ref"]), "missing_cur": _num(row["missing_cur"])}
        record = {"column": name, "design": DESIGN.get(name), "modelog": ours, "evidently": {}}
        for variant in variants:
            theirs = dict(ev["variants"][variant]["columns"][name])
            theirs["score_abs_diff"] = score_diff(ours["score"], theirs["score"])
            theirs["same_method"] = ours["method"] == theirs["method"]
            theirs["same_verdict"] = ours["drift"] == theirs["drift"]
            theirs["same_score"] = scores_equal(ours["score"], theirs["score"])
            theirs["difference"] = diagnose(name, ours, theirs, reference, current, variant)
            record["evidently"][variant] = theirs
        columns.append(record)

    summary = {"modelog_median_s": ml_median, "modelog_timings_s": ml_timings, "variants": {}}
    for variant in variants:
        v = ev["variants"][variant]
        per = [c["evidently"][variant] for c in columns]
        summary["variants"][variant] = {
            "api": v["api"], "median_s": v["median_s"], "timings_s": v["timings_s"], "splits": v["splits"],
            "speedup": v["median_s"] / ml_median,
            "same_method": sum(p["same_method"] for p in per),
            "same_verdict": sum(p["same_method"] and p["same_verdict"] for p in per),
            "same_score": sum(p["same_score"] for p in per),
            "max_abs_score_diff_where_both_scored": max(
                (p["score_abs_diff"] for p in per if p["same_method"] and p["score_abs_diff"] is not None),
                default=None),
            "drifted_columns": sum(bool(p["drift"]) for p in per),
            "dataset_level": v.get("dataset", {}),
            "warnings": v["warnings"],
        }
    summary["modelog_drifted_columns"] = int(report["drift"].sum())
    presets = [v for v in variants if v in ("preset", "legacy")]
    target_vs = min(presets, key=lambda v: ev["variants"][v]["median_s"]) if presets else primary
    summary["target_speedup_vs"] = target_vs
    summary["target_speedup"] = summary["variants"][target_vs]["speedup"]

    result = {
        "benchmark": "drift statistics: modelog.drift.compare vs Evidently DataDriftPreset",
        "data": {"rows_reference": args.rows, "rows_current": args.rows, "seed": args.seed,
                 "numeric_columns": len(numerical), "categorical_columns": len(categorical), "design": DESIGN},
        "repeat": args.repeat, "warmup_rows": args.warmup_rows, "machine": start_machine,
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
        "modelog_versions": {"pandas": pd.__version__, "numpy": np.__version__,
                             "scipy": __import__("scipy").__version__},
        "evidently_env": {"venv": str(EVIDENTLY_VENV.relative_to(HERE.parent)), "pins": evidently_pins(),
                          "installed": ev["versions"], "python": ev["python"]},
        "score_tolerance": f"|a - b| <= {SCORE_RTOL} * max(1, |a|, |b|)",
        "summary": summary, "columns": columns, "targets": TARGETS,
    }

    # --- print ---
    n = len(columns)
    print(f"\nmodelog drift benchmark — {args.rows:,} reference x {args.rows:,} current rows, "
          f"{len(numerical)} numeric + {len(categorical)} categorical columns (seed {args.seed}); "
          f"{start_machine['cpus']} CPUs, Python {start_machine['python']}, "
          f"load avg at start {start_machine['load_avg_at_start'][0]}")
    print(f"Evidently {ev['versions']['evidently']} (pandas {ev['versions']['pandas']}) in {EVIDENTLY_VENV.name}; "
          f"modelog with pandas {pd.__version__}; numpy {np.__version__}, scipy {result['modelog_versions']['scipy']} "
          "on both sides")
    width = max(len(c["column"]) for c in columns)
    dwidth = max(len(c["design"] or "") for c in columns)
    print(f"\n{'column':<{width}}  {'kind':<4}  {'data (reference | current)':<{dwidth}}")
    for c in columns:
        print(f"{c['column']:<{width}}  {c['modelog']['kind']:<4}  {c['design'] or '':<{dwidth}}")
    others = [v for v in variants if v != primary]
    head = (f"\n{'column':<{width}}  {'modelog':<6} {'score':>12} {'drift':>5} | {'Evidently':<9} {'score':>12} "
            f"{'drift':>5} | {'|Δ score|':>9} {'agree':>5}" + "".join(f" | {o:>9}" for o in others))
    print(head + f"\n{'':<{width}}  (Evidently = {primary}; other variants: drift, and * if the score differs)")
    notes = []
    for c in columns:
        o, t = c["modelog"], c["evidently"][primary]
        agree = "yes" if t["same_method"] and t["same_verdict"] else "NO"
        line = (f"{c['column']:<{width}}  {short(o['method']):<6} {fmt(o['score']):>12} {str(o['drift']):>5} | "
                f"{short(t['method']):<9} {fmt(t['score']):>12} {str(t['drift']):>5} | "
                f"{'n/a' if t['score_abs_diff'] is None else format(t['score_abs_diff'], '.1e'):>9} {agree:>5}")
        for other in others:
            x = c["evidently"][other]
            mark = "" if x["same_score"] and x["same_method"] else "*"
            line += f" | {str(x['drift']) + mark:>9}"
        print(line)
        for variant in variants:
            why = c["evidently"][variant]["difference"]
            if why:
                notes.append(f"  {c['column']} vs {variant}: {why}")
    print("\nmeasure" + " " * 45 + "result       target")
    rows = [(f"modelog.drift.compare (median of {args.repeat})", f"{ml_median:.2f} s", "")]
    for variant in variants:
        s = summary["variants"][variant]
        rows.append((f"Evidently {variant} (median of {args.repeat})", f"{s['median_s']:.2f} s", ""))
    for variant in variants:
        s = summary["variants"][variant]
        tgt = ">= 10x" if variant == target_vs else ""
        rows.append((f"speed-up vs Evidently {variant}", f"{s['speedup']:.1f}x", tgt))
    for variant in variants:
        s = summary["variants"][variant]
        tgt = "all" if variant == primary else ""
        rows.append((f"verdicts agreeing with {variant} (method + drift)", f"{s['same_verdict']}/{n}", tgt))
        rows.append((f"  scores equal to {variant} (rtol {SCORE_RTOL:g})", f"{s['same_score']}/{n}", ""))
        rows.append((f"  drifted columns: modelog / {variant}",
                     f"{summary['modelog_drifted_columns']} / {s['drifted_columns']}", ""))
        if s["dataset_level"]:
            rows.append((f"  ({variant}'s own {s['dataset_level']['metric']} count)",
                         f"{s['dataset_level']['drifted_columns']}", ""))
    for name, value, target in rows:
        print(f"{name:<51} {value:>8}     {target}")
    if "preset" in summary["variants"] and summary["variants"]["preset"]["splits"]:
        sp = summary["variants"]["preset"]["splits"][-1]
        print(f"  (preset split, last run: Dataset.from_pandas {sp['dataset_from_pandas_s']:.2f} s, "
              f"Report.run {sp['report_run_s']:.2f} s)")
    if notes:
        print("\ndifferences (computed diagnosis):")
        print("\n".join(notes))
    for variant in variants:
        for w, count in summary["variants"][variant]["warnings"].items():
            print(f"Evidently {variant} warned {count}x per {args.repeat} runs: {w}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str, allow_nan=False) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
