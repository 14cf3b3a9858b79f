"""Side by side: workload W through modelog, MLflow 3.x and W&B (offline), on this machine.

    .venv/bin/python bench/compare.py [--workload W|W10] [--runs N] [--steps 500] [--repeat 3]
                                      [--only modelog,mlflow,wandb] [--no-durability] [--per-point-seconds 20]
                                      [--outage-s 10] [--markdown PATH]

W = 10 runs x (20 params, 5 tags, 20 metrics x 500 steps) = 100,000 metric points; W10 = the same with
100 runs = 1,000,000 points (issue 10's capacity workload; its own JSON and chart). Each goes through:

* modelog: SDK -> embedded broker (tansu s3:// on localbucket) -> projector, until every point is
  visible in SQL (``bench/compare_modelog.py``, this project's venv);
* MLflow: tracking server with a sqlite backend on 127.0.0.1 (``--workers 1``), client ``log_batch``
  (<= 1000 metrics per call) and per-point ``log_metric`` (time-boxed, extrapolated), and the file
  store (``bench/compare_mlflow.py``);
* W&B in offline mode, one ``run.log`` per step (``bench/compare_wandb.py``).

MLflow 3.17 requires pyarrow < 26 (this venv has 26.0.1), so the peers live in their own venv,
``bench/.venv-peers``, created on first use from ``bench/requirements-peers.txt`` (pinned) and
reused while the pins are unchanged. Each system's script runs as its own process, measures
itself (CPU seconds and peak RSS of every process involved, from /proc) and returns JSON.

Reports per system: points/s until durable and queryable, time per point inside the training
loop, CPU seconds and peak RSS of every process, ratios modelog / peer against the targets; the
queries (runs filtered by a metric and ordered by another; one metric's 500-point history); and
durability (the broker / server stopped for --outage-s in the middle of logging: points
acknowledged vs stored). Writes bench/results/compare.json and docs/benchmarks-compare.png
(rendered with matplotlib in the peers' venv). Every process started is ended, also on error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from compare_common import W, cleanup_spawned, machine, run_bounded, write_json  # noqa: E402

PEERS_VENV = HERE / ".venv-peers"
PEERS_REQUIREMENTS = HERE / "requirements-peers.txt"
SYSTEMS = ("modelog", "mlflow", "wandb")
WORKLOADS = {"W": 10, "W10": 100}  # runs of 20 metrics x 500 steps
TARGETS = {
    "sdk_us_per_point": 1.0,  # issue 10 (issue 2 asked for <= 2 us)
    "throughput_x_mlflow_log_batch": 100.0,
    "throughput_x_wandb_offline": 20.0,
    "freshness_p99_ms": 1000.0,
    "query_speedup_x_mlflow": 10.0,
    "acknowledged_but_lost": 0,
}
# The issue's figures for the peers on this kind of machine, printed beside ours as a sanity check.
ISSUE_REFERENCE = {"mlflow log_batch points/s": 3200, "mlflow log_metric points/s": 46, "wandb offline points/s": 16000,
                   "wandb us/point in loop": 37, "mlflow search_runs ms": 47, "mlflow get_metric_history ms": 63}


# -- the peers' venv ----------------------------------------------------------------------------------

def peers_python() -> Path:
    return PEERS_VENV / "bin" / "python"


def ensure_peers_venv() -> Path:
    """bench/.venv-peers with bench/requirements-peers.txt; (re)created when missing or pinned differently."""
    wanted = PEERS_REQUIREMENTS.read_text()
    stamp = PEERS_VENV / "requirements-peers.txt"
    python = peers_python()
    if python.exists() and stamp.exists() and _pins(stamp.read_text()) == _pins(wanted):
        return python
    print(f"creating {PEERS_VENV.relative_to(ROOT)} from {PEERS_REQUIREMENTS.relative_to(ROOT)} (once; ~2 min)...",
          flush=True)
    base = getattr(sys, "_base_executable", None) or "python3"
    subprocess.run([base, "-m", "venv", "--clear", str(PEERS_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-qq", "--disable-pip-version-check", "-r",
                    str(PEERS_REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return python


def _pins(text: str) -> list[str]:
    return sorted(line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip())


# -- running one system ------------------------------------------------------------------------------------

def run_system(name: str, python: Path, script: str, workdir: Path, extra: list[str], timeout: float) -> dict:
    sub = workdir / name
    sub.mkdir(parents=True, exist_ok=True)
    out = workdir / f"{name}.json"
    log = workdir / f"{name}.log"
    cmd = [str(python), str(HERE / script), "--workdir", str(sub), "--out", str(out), *extra]
    print(f"\n== {name}: {' '.join(cmd[1:2])} (log: {log})", flush=True)
    t0 = time.perf_counter()
    with log.open("wb") as fh:
        rc = run_bounded(cmd, fh, sub, timeout)
    wall = time.perf_counter() - t0
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith((f"{name}", "mlflow", "wandb")) and ("points/s" in line):
            print(f"   {line}")
    try:
        data = json.loads(out.read_text())
    except (OSError, ValueError):
        data = {"system": name, "errors": []}
    data["wall_s"] = round(wall, 1)
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        data.setdefault("errors", []).append(f"{script} exited with {rc}; last lines of {log}:\n{tail}")
        print(f"   {name}: FAILED ({rc}); see {log}")
    print(f"   {name}: done in {wall:.0f} s", flush=True)
    return data


def cleanup(workdir: Path) -> list[str]:
    """End whatever a script left running (it cleans up itself; this is for crashes and timeouts)."""
    ended = []
    home = workdir / "modelog" / "home"
    if (home / "broker" / "broker.json").exists() or (home / "processor.json").exists():
        try:
            from modelog import Settings
            from modelog.local.broker import EmbeddedBroker
            from modelog.local.processes import stop_processor
            from modelog.wire.home import running_processor

            settings = Settings.load(env={}, home=home)
            info = running_processor(settings)
            if info:
                stop_processor(settings, info)
                ended.append(f"projector (pid {info['pid']})")
            if EmbeddedBroker(home).stop():
                ended.append("embedded broker")
        except Exception as exc:  # the ledger below still applies
            ended.append(f"(modelog cleanup failed: {exc})")
    for name in SYSTEMS:
        if (workdir / name).exists():
            ended += cleanup_spawned(workdir / name)
    return ended


# -- the report ------------------------------------------------------------------------------------------------

def _f(x, fmt: str = ",.0f", none: str = "n/a") -> str:
    return none if x is None else format(x, fmt)


def throughput_rows(res: dict) -> list[dict]:
    rows = []
    m = res.get("modelog", {}).get("throughput")
    if m:
        rows.append({"key": "modelog", "system": "modelog", "variant": "SDK -> broker (s3) -> projector -> SQL",
                     **_pick(m), "queryable": "yes (SQL)", "note": "until every point is visible in SQL"})
    ml = res.get("mlflow", {})
    if ml.get("log_batch"):
        rows.append({"key": "mlflow_log_batch", "system": "MLflow", "variant": "server sqlite, log_batch <= 1000",
                     **_pick(ml["log_batch"]), "queryable": "yes (REST)", "note": "until the last call returned"})
    if ml.get("log_metric"):
        rows.append({"key": "mlflow_log_metric", "system": "MLflow", "variant": "server sqlite, log_metric per point",
                     **_pick(ml["log_metric"]), "queryable": "yes (REST)",
                     "note": "EXTRAPOLATED: " + ml["log_metric"].get("note", "")})
    if ml.get("file_store"):
        rows.append({"key": "mlflow_file_store", "system": "MLflow", "variant": "file store, log_batch <= 1000",
                     **_pick(ml["file_store"]), "queryable": "yes (local files)",
                     "note": "no server; MLFLOW_ALLOW_FILE_STORE=true"})
    wb = res.get("wandb", {}).get("offline")
    if wb:
        rows.append({"key": "wandb_offline", "system": "W&B", "variant": "offline, run.log per step", **_pick(wb),
                     "queryable": "no (offline files)", "note": "until finish() returned and the files exist"})
    return rows


def _pick(d: dict) -> dict:
    verified = next((d[k] for k in d if k.startswith("verified_points")), None)
    return {"points": d.get("points"), "seconds": d.get("seconds"), "points_per_s": d.get("points_per_s"),
            "us_per_point_in_loop": d.get("us_per_point_in_loop"), "cpu_s": d.get("totals", {}).get("cpu_s"),
            "peak_rss_mib": d.get("totals", {}).get("peak_rss_mib"), "nproc": d.get("totals", {}).get("processes"),
            "processes": d.get("processes", []), "verified_points": verified,
            "extrapolated": bool(d.get("extrapolated"))}


def ratios(rows: list[dict]) -> list[dict]:
    base = next((r for r in rows if r["key"] == "modelog"), None)
    out = []
    if not base:
        return out
    for r in rows:
        if r is base:
            continue
        out.append({"peer": f"{r['system']} {r['variant']}", "key": r["key"],
                    "throughput_x": _div(base["points_per_s"], r["points_per_s"]),
                    "us_per_point_ratio": _div(base["us_per_point_in_loop"], r["us_per_point_in_loop"]),
                    "cpu_s_ratio": _div(base["cpu_s"], r["cpu_s"]),
                    "peak_rss_ratio": _div(base["peak_rss_mib"], r["peak_rss_mib"])})
    return out


def _div(a, b):
    return None if a is None or not b else a / b


def query_rows(res: dict) -> list[dict]:
    rows = []
    for sysname in ("modelog", "mlflow"):
        for q in res.get(sysname, {}).get("queries", []) or []:
            rows.append({"system": sysname, **q})
    ref = {q["query"]: q["median_ms"] for q in rows
           if q["system"] == "mlflow" and q["api"].startswith("MlflowClient.") and "(server)" in q["api"]}
    for q in rows:
        q["mlflow_server_ms"] = ref.get(q["query"])
        q["x_faster_than_mlflow_server"] = _div(ref.get(q["query"]), q["median_ms"])
    return rows


def durability_rows(res: dict) -> list[dict]:
    rows = []
    for sysname in SYSTEMS:
        for d in res.get(sysname, {}).get("durability", []) or []:
            rows.append({"system": sysname, **d})
    return rows


def check_targets(res: dict, rows: list[dict], rats: list[dict], qrows: list[dict], drows: list[dict]) -> list[dict]:
    out = []
    m = next((r for r in rows if r["key"] == "modelog"), None)

    def add(name, value, target, ok, shown):
        out.append({"target": name, "measured": shown, "goal": target, "met": ok if value is not None else None})

    if m:
        v = m["us_per_point_in_loop"]
        add("time per point in the training loop", v, f"<= {TARGETS['sdk_us_per_point']:g} us", v is not None and v <= TARGETS["sdk_us_per_point"],
            f"{_f(v, '.2f')} us")
    for key, name, goal in (("mlflow_log_batch", "throughput vs MLflow log_batch", TARGETS["throughput_x_mlflow_log_batch"]),
                            ("wandb_offline", "throughput vs W&B offline", TARGETS["throughput_x_wandb_offline"])):
        r = next((x for x in rats if x["key"] == key), None)
        if r:
            v = r["throughput_x"]
            add(name, v, f">= {goal:.0f}x", v is not None and v >= goal, f"{_f(v, '.1f')}x")
    fr = res.get("modelog", {}).get("freshness")
    if fr:
        v = fr["freshness_p99_ms"]
        add("event -> visible in SQL, p99", v, "<= 1000 ms", v <= TARGETS["freshness_p99_ms"], f"{v:.0f} ms")
    for q in qrows:
        if q["system"] == "modelog" and "CLI" not in q["api"] and q["x_faster_than_mlflow_server"] is not None:
            v = q["x_faster_than_mlflow_server"]
            add(f"{q['query']} via {q['api'].split(' ')[0]}", v, ">= 10x faster than MLflow's server",
                v >= TARGETS["query_speedup_x_mlflow"], f"{q['median_ms']:.1f} ms ({v:.1f}x)")
    for d in drows:
        if d["system"] == "modelog" and "acknowledged_but_lost" in d:
            v = d["acknowledged_but_lost"]
            add("acknowledged points lost (broker down mid-logging)", v, "0", v == 0,
                f"{v} of {d['points_acknowledged']:,}")
    tf = res.get("modelog", {}).get("true_failure")
    if tf and "delivery_error_raised" in tf:
        add("DeliveryError when delivery truly failed", 1, "raised", bool(tf["delivery_error_raised"]),
            f"{'raised' if tf['delivery_error_raised'] else 'NOT raised'} after {tf.get('end_returned_after_s')} s")
    return out


def print_report(report: dict) -> None:
    mc = report["machine"]
    print(f"\nmodelog vs MLflow vs W&B — {report['workload_text']}")
    print(f"machine: {mc['cpus']} CPUs, {mc['memory_gib']} GiB, Python {mc['python']}, {mc['platform']}; "
          f"load average at start {mc.get('loadavg_1_5_15')}, at end {report.get('loadavg_end')}")
    print("versions: " + "; ".join(f"{k} {v}" for k, v in report["versions"].items() if v))

    print(f"\nThroughput ({report['workload']['name']}; CPU = user+sys of every process over the window; RSS = sum of each process's peak)")
    hdr = ("system", "variant", "points/s", "us/point in loop", "CPU s", "peak RSS MiB", "procs", "verified", "queryable")
    rows = [(r["system"], r["variant"] + (" [extrapolated]" if r["extrapolated"] else ""), _f(r["points_per_s"]),
             _f(r["us_per_point_in_loop"], ",.2f"), _f(r["cpu_s"], ",.2f"), _f(r["peak_rss_mib"], ",.0f"),
             _f(r["nproc"], "d"), _f(r["verified_points"], ","), r["queryable"]) for r in report["throughput"]]
    _table(hdr, rows)
    print("\nProcesses (CPU s over the window, peak RSS MiB)")
    for r in report["throughput"]:
        print(f"  {r['system']} / {r['variant']}:")
        for p in r["processes"]:
            print(f"    {p['role']:<58} pid {p['pid']:>7}  cpu {_f(p['cpu_s'], '.2f'):>7} s  "
                  f"peak RSS {_f(p['peak_rss_mib'], '.0f'):>5} MiB")

    if report["ratios"]:
        print("\nRatios modelog / peer (throughput: higher is better for modelog; the others: lower is)")
        _table(("peer", "throughput x", "us/point ratio", "CPU s ratio", "peak RSS ratio"),
               [(r["peer"], _f(r["throughput_x"], ",.1f"), _f(r["us_per_point_ratio"], ".4f"),
                 _f(r["cpu_s_ratio"], ".3f"), _f(r["peak_rss_ratio"], ".2f")) for r in report["ratios"]])
    fr = report.get("freshness")
    if fr:
        print(f"\nmodelog event -> visible in SQL ({fr['probes']} probes): p50 {fr['freshness_p50_ms']:.0f} ms, "
              f"p99 {fr['freshness_p99_ms']:.0f} ms, max {fr['freshness_max_ms']:.0f} ms")
    if report["queries"]:
        print(f"\nQueries on W's data (median of {report['queries'][0].get('reps')} after a warm-up)")
        _table(("query", "system / API", "median ms", "rows (expected)", "x faster than MLflow server"),
               [(q["query"], q["api"], _f(q["median_ms"], ",.1f"), f"{q.get('rows')} ({q.get('expected_rows')})",
                 _f(q["x_faster_than_mlflow_server"], ",.1f")) for q in report["queries"]])
    if report["durability"]:
        print("\nDurability: the broker / server stopped in the middle of logging, restarted later")
        _table(("system / variant", "acked", "stored", "acked but lost", "returned OK but lost", "errors raised",
                "longest call", "outage (s after loop start)"),
               [(f"{d['system']} {d.get('variant', '')}", _f(d.get("points_acknowledged"), ","),
                 _f(d.get("points_stored"), ","), _f(d.get("acknowledged_but_lost"), ","),
                 _f(d.get("returned_ok_but_lost"), ","), _f(d.get("errors_raised"), ","), _stall(d), _outage(d))
                for d in report["durability"]])
        tf = report.get("true_failure")
        if tf:
            print(f"modelog true failure ({tf.get('what')}): DeliveryError "
                  f"{'raised' if tf.get('delivery_error_raised') else 'NOT raised'} after "
                  f"{tf.get('end_returned_after_s')} s; points stored {tf.get('points_stored')}")
    print("\nTargets")
    _table(("target", "measured", "goal", "met"),
           [(t["target"], t["measured"], t["goal"], {True: "yes", False: "NO", None: "n/a"}[t["met"]])
            for t in report["targets"]])
    for note in report["not_measured"]:
        print(f"not measured: {note}")
    for e in report["errors"]:
        print(f"ERROR: {e}")


def _stall(d: dict) -> str:
    if d.get("longest_logging_call_s") is None:
        return "n/a"
    return f"{d['longest_logging_call_s']:.2f} s ({d.get('longest_logging_call')})"


def _outage(d: dict) -> str:
    o = d.get("outage") or {}
    if d.get("error"):
        return f"error: {d['error']}"
    return (f"stop {o.get('stop_at_s')} -> gone {o.get('stopped_after_s', o.get('stop_at_s'))} -> restart "
            f"{o.get('restart_at_s')} -> ready {o.get('ready_at_s')}")


def _table(hdr, rows) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(hdr, *rows)]
    print("  ".join(f"{h:<{w}}" for h, w in zip(hdr, widths)))
    for r in rows:
        print("  ".join(f"{str(x):<{w}}" for x, w in zip(r, widths)))


def markdown(report: dict) -> str:
    """The tables for docs/benchmarks.md."""
    out = []
    out.append("| system | variant | points/s until durable and queryable | µs per point in the loop | "
               "CPU s (all processes) | peak RSS MiB (sum) | processes | queryable |")
    out.append("|---|---|---:|---:|---:|---:|---:|---|")
    for r in report["throughput"]:
        out.append(f"| {r['system']} | {r['variant']}{' (**extrapolated**)' if r['extrapolated'] else ''} | "
                   f"{_f(r['points_per_s'])} | {_f(r['us_per_point_in_loop'], ',.2f')} | {_f(r['cpu_s'], ',.2f')} | "
                   f"{_f(r['peak_rss_mib'], ',.0f')} | {_f(r['nproc'], 'd')} | {r['queryable']} |")
    out.append("")
    out.append("| modelog / peer | throughput | µs per point | CPU s | peak RSS |")
    out.append("|---|---:|---:|---:|---:|")
    for r in report["ratios"]:
        out.append(f"| {r['peer']} | {_f(r['throughput_x'], ',.1f')}× | {_f(r['us_per_point_ratio'], '.4f')} | "
                   f"{_f(r['cpu_s_ratio'], '.3f')} | {_f(r['peak_rss_ratio'], '.2f')} |")
    out.append("")
    out.append("| query | system / API | median ms | rows | × faster than MLflow's server |")
    out.append("|---|---|---:|---:|---:|")
    for q in report["queries"]:
        out.append(f"| {q['query']} | {q['system']}: {q['api']} | {_f(q['median_ms'], ',.1f')} | {q.get('rows')} | "
                   f"{_f(q['x_faster_than_mlflow_server'], ',.1f')} |")
    out.append("")
    out.append("| durability: system / variant | acknowledged | stored | acknowledged but lost | "
               "returned OK but lost | errors raised | longest logging call |")
    out.append("|---|---:|---:|---:|---:|---:|---|")
    for d in report["durability"]:
        out.append(f"| {d['system']}: {d.get('variant', '')} | {_f(d.get('points_acknowledged'), ',')} | "
                   f"{_f(d.get('points_stored'), ',')} | {_f(d.get('acknowledged_but_lost'), ',')} | "
                   f"{_f(d.get('returned_ok_but_lost'), ',')} | {_f(d.get('errors_raised'), ',')} | {_stall(d)} |")
    out.append("")
    out.append("| target | measured | goal | met |")
    out.append("|---|---|---|---|")
    for t in report["targets"]:
        out.append(f"| {t['target']} | {t['measured']} | {t['goal']} | {({True: 'yes', False: '**no**', None: 'n/a'})[t['met']]} |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=sorted(WORKLOADS), default="W",
                    help="W: 10 runs (10^5 points); W10: 100 runs (10^6 points)")
    ap.add_argument("--runs", type=int, default=None, help="override the workload's number of runs")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3, help="throughput repetitions per system (median reported)")
    ap.add_argument("--only", default=",".join(SYSTEMS), help="comma-separated subset of modelog,mlflow,wandb")
    ap.add_argument("--probes", type=int, default=200, help="modelog freshness probes")
    ap.add_argument("--query-reps", type=int, default=20)
    ap.add_argument("--per-point-seconds", type=float, default=20.0, help="MLflow per-point log_metric time box")
    ap.add_argument("--durability", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--pace-ms", type=float, default=5.0, help="durability: training-loop period per step")
    ap.add_argument("--outage-at", type=float, default=8.0, help="durability: stop after this many s of logging")
    ap.add_argument("--outage-s", type=float, default=10.0, help="durability: down for this many s")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per system script")
    ap.add_argument("--out", type=Path, default=None, help="default bench/results/compare[-w10].json")
    ap.add_argument("--chart", type=Path, default=None, help="default docs/benchmarks-compare[-w10].png")
    ap.add_argument("--no-chart", action="store_true")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the tables as Markdown here")
    ap.add_argument("--keep-workdir", action="store_true")
    args = ap.parse_args()
    suffix = "" if args.workload == "W" else f"-{args.workload.lower()}"
    args.runs = WORKLOADS[args.workload] if args.runs is None else args.runs
    args.out = args.out or HERE / "results" / f"compare{suffix}.json"
    args.chart = args.chart or ROOT / "docs" / f"benchmarks-compare{suffix}.png"

    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SYSTEMS)
    if unknown:
        ap.error(f"--only: unknown {sorted(unknown)}")
    w = W(args.runs, args.steps)
    started = time.perf_counter()
    report: dict = {"workload": {"name": args.workload, **w.as_dict()}, "workload_text": w.describe(), "machine": machine(),
                    "command": " ".join([".venv/bin/python", "bench/compare.py", *sys.argv[1:]]),
                    "settings": {k: v for k, v in vars(args).items() if k not in ("out", "chart", "markdown")},
                    "targets_spec": TARGETS, "issue_reference": ISSUE_REFERENCE, "errors": [], "not_measured": []}
    need_peers = any(s in only for s in ("mlflow", "wandb")) or not args.no_chart
    python_peers = ensure_peers_venv() if need_peers else None
    workdir = Path(tempfile.mkdtemp(prefix="modelog-compare-"))
    common = ["--runs", str(args.runs), "--steps", str(args.steps), "--repeat", str(args.repeat),
              "--pace-ms", str(args.pace_ms), "--outage-at", str(args.outage_at), "--outage-s", str(args.outage_s),
              "--durability" if args.durability else "--no-durability"]
    results: dict = {}
    try:
        if "modelog" in only:
            results["modelog"] = run_system("modelog", Path(sys.executable), "compare_modelog.py", workdir,
                                            common + ["--probes", str(args.probes), "--query-reps", str(args.query_reps)],
                                            args.timeout)
        if "mlflow" in only:
            results["mlflow"] = run_system("mlflow", python_peers, "compare_mlflow.py", workdir,
                                           common + ["--query-reps", str(args.query_reps),
                                                     "--per-point-seconds", str(args.per_point_seconds)], args.timeout)
        if "wandb" in only:
            results["wandb"] = run_system("wandb", python_peers, "compare_wandb.py", workdir, common, args.timeout)
    finally:
        leftovers = cleanup(workdir)
        if leftovers:
            report["errors"].append(f"had to end processes a script left running: {', '.join(leftovers)}")
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")

    versions = {}
    for name, data in results.items():
        versions.update(data.get("versions") or {})
        report["errors"] += [f"{name}: {e}" for e in data.get("errors", [])]
    report["versions"] = versions
    report["systems"] = results
    rows = throughput_rows(results)
    report["throughput"] = rows
    report["ratios"] = ratios(rows)
    report["freshness"] = results.get("modelog", {}).get("freshness")
    report["queries"] = query_rows(results)
    report["durability"] = durability_rows(results)
    report["true_failure"] = results.get("modelog", {}).get("true_failure")
    report["targets"] = check_targets(results, rows, report["ratios"], report["queries"], report["durability"])
    if "wandb" in results:
        report["not_measured"].append("W&B queries: offline mode writes local files only; querying needs W&B's "
                                      "cloud service (wandb sync), which this machine cannot reach")
        report["not_measured"].append("W&B durability: offline mode has no server to stop; its local service "
                                      "(wandb-core) was killed instead and a new one started after the outage")
    if "mlflow" in results:
        report["not_measured"].append("MLflow per-point log_metric over all of W: time-boxed to "
                                      f"{args.per_point_seconds:.0f} s and extrapolated (marked)")
    report["loadavg_end"] = machine()["loadavg_1_5_15"]
    report["total_wall_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, report)
    print_report(report)
    if args.markdown:
        args.markdown.write_text(markdown(report))
        print(f"\nwrote {args.markdown}")
    print(f"\nwrote {args.out}")
    if not args.no_chart and python_peers is not None:
        p = subprocess.run([str(python_peers), str(HERE / "compare_chart.py"), str(args.out), str(args.chart)],
                           capture_output=True, text=True)
        if p.returncode == 0:
            print(f"wrote {args.chart}")
        else:
            print(f"chart failed: {p.stderr[-2000:]}")
    print(f"one full run took {time.perf_counter() - started:.0f} s")
    return 1 if any("exited with" in e for e in report["errors"]) else 0


if __name__ == "__main__":
    sys.exit(main())
