"""Render bench/results/compare.json as a PNG (matplotlib; run by bench/compare.py with the peers' venv).

    bench/.venv-peers/bin/python bench/compare_chart.py bench/results/compare.json docs/benchmarks-compare.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"modelog": "#1b7f5f", "MLflow": "#1f5fa8", "W&B": "#d9a21b", "mlflow": "#1f5fa8", "wandb": "#d9a21b"}


def _bars(ax, labels, values, colors, title, unit, fmt="{:,.0f}", hatches=None):
    ys = range(len(labels))
    vals = [v if v else 0 for v in values]
    bars = ax.barh(list(ys), vals, color=colors, edgecolor="black", linewidth=0.4)
    for b, h in zip(bars, hatches or [None] * len(bars)):
        if h:
            b.set_hatch(h)
    ax.set_yticks(list(ys), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(unit, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    for y, v in zip(ys, values):
        ax.text(v if v else 1, y, "  " + (fmt.format(v) if v is not None else "n/a"), va="center", fontsize=7)
    if any(vals):
        lo = min(v for v in vals if v > 0)
        ax.set_xlim(lo / 3, max(vals) * 30)


def main() -> None:
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    r = json.loads(src.read_text())
    rows = r["throughput"]
    fig, axes = plt.subplots(3, 2, figsize=(15, 12))
    labels = [f"{x['system']}: {x['variant']}" for x in rows]
    colors = [COLORS.get(x["system"], "grey") for x in rows]
    hatches = ["//" if x["extrapolated"] else None for x in rows]
    _bars(axes[0][0], labels, [x["points_per_s"] for x in rows], colors,
          "points/s until durable and queryable (higher is better)", "points/s (log)", hatches=hatches)
    _bars(axes[0][1], labels, [x["us_per_point_in_loop"] for x in rows], colors,
          "time per point in the training loop (lower is better)", "µs per point (log)", fmt="{:,.2f} µs",
          hatches=hatches)
    _bars(axes[1][0], labels, [x["cpu_s"] for x in rows], colors,
          "CPU seconds, all processes involved (lower is better)", "CPU s (log)", fmt="{:,.2f} s", hatches=hatches)
    _bars(axes[1][1], labels, [x["peak_rss_mib"] for x in rows], colors,
          "peak RSS, sum over the processes (lower is better)", "MiB (log)", fmt="{:,.0f} MiB")
    q = [x for x in r.get("queries", []) if "CLI" not in x["api"]]
    short = {"runs filtered by a metric, ordered by another": "filter+order runs", "one metric's history": "history"}
    ql = [f"{short.get(x['query'], x['query'])} | {x['system']}: {x['api'].split(' ')[0]}"
          + (" (file store)" if "file store" in x["api"] else " (server)" if x["system"] == "mlflow" else "")
          for x in q]
    _bars(axes[2][0], ql, [x["median_ms"] for x in q], [COLORS.get(x["system"], "grey") for x in q],
          "queries on W's data, median (lower is better)", "ms (log)", fmt="{:,.1f} ms")
    ax = axes[2][1]
    d = r.get("durability", [])
    dl = [f"{x['system']}: {x.get('variant', '').split(' (')[0]}" for x in d]
    ys = list(range(len(d)))
    acked = [x.get("points_acknowledged") or 0 for x in d]
    lost = [max(x.get("acknowledged_but_lost") or 0, x.get("returned_ok_but_lost") or 0) for x in d]
    stored = [x.get("points_stored") or 0 for x in d]
    ax.barh([y - 0.27 for y in ys], acked, height=0.27, color="#8fbf8f", label="acknowledged")
    ax.barh(ys, stored, height=0.27, color="#6f8fbf", label="stored after recovery")
    ax.barh([y + 0.27 for y in ys], lost, height=0.27, color="#d04040", label="returned OK but lost")
    for y, v in zip(ys, lost):
        ax.text(v, y + 0.27, f"  {v:,} lost", va="center", fontsize=7)
    ax.set_yticks(ys, dl, fontsize=8)
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"durability: stopped for {r['settings'].get('outage_s', '?'):.0f} s mid-logging", fontsize=10)
    ax.set_xlabel("points", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    mc = r["machine"]
    fig.suptitle(f"{r['workload_text']} — {mc['cpus']} CPUs, Python {mc['python']}  "
                 f"(hatched = extrapolated; W&B offline is not queryable)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    dst.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dst, dpi=100)


if __name__ == "__main__":
    main()
