"""How cost grows: ingest throughput, query latency and memory at 10^5..10^7 points and 10^2..10^4 runs.

Two series, each point on a fresh embedded broker (s3 storage: the durable default) and projector:

* points: 100 runs x 20 metrics x (50 | 500 | 5,000) steps = 10^5, 10^6, 10^7 points;
* runs:   10^2, 10^3, 10^4 runs x (20 metrics x 5 steps, 5 params, 2 tags).

Per point: points/s from the first ``start_run`` until every point is visible in SQL, SDK time per run
and per point, the two queries of ``bench/compare.py`` (median of 20, through ``modelog.sql_arrow``),
the size of the views file, the peak RSS and the CPU time per point of every process (SDK = this process,
projector, broker; CPU time holds when other work shares the cores, wall-clock rates do not), and the load
average.
A table, ``bench/results/growth.json`` and, when ``bench/.venv-peers`` has matplotlib (``bench/compare.py``
builds it), ``docs/benchmarks-growth.png``.

    python bench/growth.py [--points 1e5,1e6,1e7] [--runs 1e2,1e3,1e4] [--storage s3|memory]
                           [--duckdb-memory-limit SIZE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from backbone import machine  # noqa: E402
from compare_common import cpu_seconds, median_ms, peak_rss_mib, reset_peak_rss  # noqa: E402

METRICS = 20


def measure(storage: str, runs: int, steps: int, params: int, tags: int, memory_limit: str | None = None) -> dict:
    from modelog import Client, Settings, sql_arrow
    from modelog.local.broker import EmbeddedBroker
    from modelog.local.processes import start_processor_background, stop_processor
    from modelog.wire.home import running_processor

    home = Path(tempfile.mkdtemp(prefix="modelog-growth-"))
    broker = EmbeddedBroker(home, storage=storage)
    env = {"MODELOG_DUCKDB_MEMORY_LIMIT": memory_limit} if memory_limit else {}
    settings = Settings.load(env=env, home=home, bootstrap=broker.start(), session_timeout_ms=2000)
    keys = [f"metric_{j:02d}" for j in range(METRICS)]
    try:
        start_processor_background(settings)
        proc_pid = running_processor(settings)["pid"]
        client = Client(settings)
        client.create_experiment("growth")
        client.flush()
        reset_peak_rss(proc_pid)
        reset_peak_rss(os.getpid())
        cpu0 = {"sdk": cpu_seconds(os.getpid()), "projector": cpu_seconds(proc_pid),
                "broker": sum(cpu_seconds(p) or 0 for p in _broker_pids(home))}
        t0 = time.perf_counter()
        in_loop = run_s = 0.0
        for r in range(runs):
            t1 = time.perf_counter()
            with client.start_run(experiment="growth", name=f"r{r}", tags={f"tag_{t}": str(t) for t in range(tags)}) as run:
                run.log_params({f"param_{p}": p for p in range(params)})
                for step in range(steps):
                    values = {k: j + step * 0.001 + r * 0.01 for j, k in enumerate(keys)}
                    t2 = time.perf_counter()
                    run.log_metrics(values, step=step)
                    in_loop += time.perf_counter() - t2
            run_s += time.perf_counter() - t1
        client.wait_projected(timeout=3600)
        total = time.perf_counter() - t0
        points = runs * steps * METRICS
        cpu1 = {"sdk": cpu_seconds(os.getpid()), "projector": cpu_seconds(proc_pid),
                "broker": sum(cpu_seconds(p) or 0 for p in _broker_pids(home))}
        # CPU time per point of each process: what the work costs, whatever else runs on the cores
        cpu_us = {k: None if cpu0[k] is None or cpu1[k] is None else (cpu1[k] - cpu0[k]) / points * 1e6 for k in cpu0}
        visible = sql_arrow("SELECT count(*) AS n FROM metrics", settings).column("n")[0].as_py()
        assert visible == points, f"{visible} visible of {points}"
        rid = sql_arrow("SELECT min(run_id) AS r FROM runs", settings).column("r")[0].as_py()
        queries = {
            "filter_order_ms": ("SELECT r.run_id, a.value AS a, b.value AS b FROM runs r "
                                "JOIN latest_metrics a ON a.run_id = r.run_id AND a.key = 'metric_00' "
                                "JOIN latest_metrics b ON b.run_id = r.run_id AND b.key = 'metric_01' "
                                "WHERE a.value > 0.05 ORDER BY b.value DESC"),
            "history_ms": (f"SELECT step, value, timestamp FROM metrics WHERE run_id = '{rid}' AND key = 'metric_00' "
                           "ORDER BY step"),
            "runs_list_ms": "SELECT run_id, name, status, start_time FROM runs ORDER BY start_time DESC LIMIT 50",
        }
        # cache=False: each statement planned and run, as before the endpoint kept answers (decision 0028)
        lat = {name: median_ms(lambda q=q: sql_arrow(q, settings, cache=False), 20)["median_ms"]
               for name, q in queries.items()}
        broker_pids = _broker_pids(home)
        rss = {"sdk": peak_rss_mib(os.getpid()), "projector": peak_rss_mib(proc_pid),
               "broker": sum(peak_rss_mib(p) or 0 for p in broker_pids)}
        client.close()
        db_mib = sum(p.stat().st_size for p in settings.views_path.parent.glob(settings.views_path.name + "*")) / 2**20
        return {"runs": runs, "steps": steps, "points": points, "seconds": total, "points_per_s": points / total,
                "sdk_ms_per_run_excl_points": (run_s - in_loop) / runs * 1000,
                "sdk_us_per_point": in_loop / points * 1e6, **lat, "views_file_mib": db_mib,
                "peak_rss_mib": rss, "cpu_us_per_point": cpu_us, "load_average": os.getloadavg()}
    finally:
        info = running_processor(settings)
        if info:
            stop_processor(settings, info)
        broker.stop()
        shutil.rmtree(home, ignore_errors=True)


def _broker_pids(home: Path) -> list[int]:
    """tansu and its storage server (``broker.json`` names them)."""
    try:
        state = json.loads((home / "broker" / "broker.json").read_text())
    except (OSError, ValueError):
        return []
    return [p for p in (state.get("pid"), state.get("s3_pid")) if p]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", default="1e5,1e6,1e7")
    ap.add_argument("--runs", default="1e2,1e3,1e4")
    ap.add_argument("--storage", choices=["s3", "memory"], default="s3")
    ap.add_argument("--duckdb-memory-limit", default=None, metavar="SIZE",
                    help="the projector's MODELOG_DUCKDB_MEMORY_LIMIT (default: DuckDB's, 80%% of RAM)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "growth.json")
    ap.add_argument("--chart", type=Path, default=ROOT / "docs" / "benchmarks-growth.png")
    args = ap.parse_args()

    series: dict[str, list[dict]] = {"points": [], "runs": []}
    for n in [int(float(x)) for x in args.points.split(",") if x]:
        r = measure(args.storage, runs=100, steps=n // (100 * METRICS), params=20, tags=5,
                    memory_limit=args.duckdb_memory_limit)
        series["points"].append(r)
        c = r["cpu_us_per_point"]
        print(f"  points {r['points']:>10,}: {r['points_per_s']:>9,.0f} points/s, filter {r['filter_order_ms']:.1f} ms, "
              f"history {r['history_ms']:.1f} ms, projector {r['peak_rss_mib']['projector']:.0f} MiB; CPU us/point "
              f"sdk {c['sdk'] or 0:.2f}, projector {c['projector'] or 0:.2f}, broker {c['broker'] or 0:.2f}; "
              f"load average {r['load_average'][0]:.1f}", flush=True)
    for n in [int(float(x)) for x in args.runs.split(",") if x]:
        r = measure(args.storage, runs=n, steps=5, params=5, tags=2, memory_limit=args.duckdb_memory_limit)
        series["runs"].append(r)
        print(f"  runs {r['runs']:>8,}: {r['points_per_s']:>9,.0f} points/s, {r['sdk_ms_per_run_excl_points']:.2f} ms/run, "
              f"filter {r['filter_order_ms']:.1f} ms, projector {r['peak_rss_mib']['projector']:.0f} MiB", flush=True)

    print(f"\nmodelog growth — embedded broker ({args.storage}); {machine()['cpus']} CPUs, Python {machine()['python']}")
    head = (f"{'runs':>7} {'points':>11} {'points/s':>9} {'ms/run':>7} {'us/pt':>6} {'filter ms':>9} {'history ms':>10} "
            f"{'runs list ms':>12} {'views MiB':>9} {'RSS MiB sdk/projector/broker':>28}")
    print(head)
    for name in ("points", "runs"):
        for r in series[name]:
            m = r["peak_rss_mib"]
            print(f"{r['runs']:>7,} {r['points']:>11,} {r['points_per_s']:>9,.0f} {r['sdk_ms_per_run_excl_points']:>7.2f} "
                  f"{r['sdk_us_per_point']:>6.2f} {r['filter_order_ms']:>9.1f} {r['history_ms']:>10.1f} "
                  f"{r['runs_list_ms']:>12.1f} {r['views_file_mib']:>9.1f} "
                  f"{m['sdk']:>8.0f}/{m['projector']:>6.0f}/{m['broker']:>6.0f}")
    out = {"machine": machine(), "storage": args.storage, "duckdb_memory_limit": args.duckdb_memory_limit, "metrics": METRICS, "series": series}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    peers = HERE / ".venv-peers" / "bin" / "python"
    if peers.exists():
        subprocess.run([str(peers), str(HERE / "growth_chart.py"), str(args.out), str(args.chart)], check=True)
        print(f"wrote {args.chart}")
    else:
        print("no chart: bench/.venv-peers is missing (python bench/compare.py builds it)")


if __name__ == "__main__":
    main()
