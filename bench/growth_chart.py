"""Render bench/results/growth.json as a PNG (matplotlib; run by bench/growth.py with bench/.venv-peers).

    bench/.venv-peers/bin/python bench/growth_chart.py bench/results/growth.json docs/benchmarks-growth.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, dst: str) -> None:
    data = json.loads(Path(src).read_text())
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for row, (series, xlabel) in enumerate((("points", "metric points"), ("runs", "runs"))):
        rows = data["series"][series]
        if not rows:
            continue
        xs = [r[series] for r in rows]
        ax = axes[row][0]
        ax.plot(xs, [r["points_per_s"] for r in rows], "o-", color="#1b7f5f")
        ax.set_title(f"ingest until queryable vs {xlabel}", fontsize=10)
        ax.set_ylabel("points/s")
        ax = axes[row][1]
        for key, label in (("filter_order_ms", "runs filtered + ordered"), ("history_ms", "one metric's history"),
                           ("runs_list_ms", "latest 50 runs")):
            ax.plot(xs, [r[key] for r in rows], "o-", label=label)
        ax.set_title(f"query latency vs {xlabel}", fontsize=10)
        ax.set_ylabel("ms (median of 20)")
        ax.legend(fontsize=8)
        ax = axes[row][2]
        for key in ("sdk", "projector", "broker"):
            ax.plot(xs, [r["peak_rss_mib"][key] for r in rows], "o-", label=key)
        ax.set_title(f"peak RSS vs {xlabel}", fontsize=10)
        ax.set_ylabel("MiB")
        ax.legend(fontsize=8)
        for ax in axes[row]:
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.grid(True, which="both", alpha=0.3)
            ax.set_ylim(bottom=0)
    m = data["machine"]
    fig.suptitle(f"modelog: how cost grows (embedded broker, {data['storage']}; {m['cpus']} CPUs, "
                 f"Python {m['python']})", fontsize=11)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
