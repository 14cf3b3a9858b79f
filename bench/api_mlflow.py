"""MLflow's side of ``bench/api.py`` (run by it with the peers' venv, bench/.venv-peers; writes JSON).

A fresh ``mlflow server`` (sqlite backend in the work directory, 127.0.0.1, ``--workers 1``, job runner off:
``bench/compare_mlflow.Server``), loaded with bench/api_common's dataset through ``MlflowClient``:
``create_run`` (with the tags) + one ``log_batch`` (params and metrics) per run (left RUNNING:
``set_terminated`` would be a third call per run, and the status plays no part in the requests timed), and the
long history with ``log_batch`` calls of 1,000 metrics (MLflow's limit per call). Loading is timed. Then:

* ``MlflowClient.search_runs([exp], filter_string, order_by=[...], max_results=100)``: the runs-table page;
* ``MlflowClient.get_metric_history(run_id, key)``: every point (MLflow has no server-side downsampling);

each p50 / p99 over ``--repeat`` calls after a warm-up, bounded by ``--budget-s`` per request.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from api_common import (  # noqa: E402
    EXPERIMENT,
    FILTER_MLFLOW,
    HISTORY_EXPERIMENT,
    HISTORY_KEY,
    HISTORY_RUN,
    ORDER_MLFLOW,
    PAGE,
    Dataset,
    timed,
)
from compare_common import machine, write_json  # noqa: E402
from compare_mlflow import Server, versions  # noqa: E402

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
BATCH = 1000


def load_runs(client, ds: Dataset, exp: str, threads: int, deadline: float) -> dict:
    from mlflow.entities import Metric, Param

    ts = int(time.time() * 1000)

    def one(r: int) -> str:
        if time.monotonic() > deadline:
            raise TimeoutError("MLflow load over its time budget (--load-budget-s); use fewer --runs")
        rid = client.create_run(exp, run_name=ds.name(r), tags=ds.tags(r)).info.run_id
        client.log_batch(rid, metrics=[Metric(k, v, ts, 0) for k, v in ds.metrics(r).items()],
                         params=[Param(k, v) for k, v in ds.params(r).items()])
        return rid

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        ids = list(pool.map(one, range(ds.runs)))
    s = time.perf_counter() - t0
    return {"runs": len(ids), "seconds": round(s, 1), "runs_per_s": round(len(ids) / s, 1), "threads": threads,
            "calls_per_run": 2}


def load_history(client, ds: Dataset, exp: str, deadline: float) -> tuple[str, dict]:
    from mlflow.entities import Metric

    rid = client.create_run(exp, run_name=HISTORY_RUN).info.run_id
    ts0 = int(time.time() * 1000)
    t0 = time.perf_counter()
    for start in range(0, ds.points, BATCH):
        if time.monotonic() > deadline:
            raise TimeoutError(f"MLflow history load over its time budget after {start:,} points; use fewer --points")
        client.log_batch(rid, metrics=[Metric(HISTORY_KEY, ds.curve(i), ts0 + i, i)
                                       for i in range(start, min(start + BATCH, ds.points))])
    client.set_terminated(rid)
    s = time.perf_counter() - t0
    return rid, {"points": ds.points, "calls": -(-ds.points // BATCH), "seconds": round(s, 1),
                 "points_per_s": round(ds.points / s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--budget-s", type=float, default=90.0, help="time bound of each request's timing loop")
    ap.add_argument("--load-threads", type=int, default=4)
    ap.add_argument("--load-budget-s", type=float, default=1800.0)
    ap.add_argument("--load", choices=("server", "direct"), default="server",
                    help="load through the server's REST API (default), or with MlflowClient straight on the "
                         "sqlite file before the server starts (same MLflow store code and the same rows, "
                         "several times quicker; only the reads are timed either way)")
    args = ap.parse_args()

    import logging

    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    ds = Dataset(args.runs, args.points)
    result: dict = {"system": "mlflow", "versions": versions(), "machine": machine(), "dataset": ds.as_dict(),
                    "errors": [], "notes": [
                        "server: mlflow server --backend-store-uri sqlite:///... --host 127.0.0.1 --workers 1 "
                        "(uvicorn); MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false"]}
    server = Server(args.workdir / "mlflow-server", args.workdir)
    try:
        if args.load == "server":
            result["server_start_s"] = round(server.start(), 2)
            client = MlflowClient(server.uri)
        else:  # the tracking store on the same sqlite file, in this process; the server starts after loading
            client = MlflowClient(f"sqlite:///{server.db}")
            result["notes"].append("loaded with MlflowClient('sqlite:///...') before the server started "
                                   "(--load direct); the timed reads go through the server")
        result["load"] = args.load
        client.search_experiments()
        deadline = time.monotonic() + args.load_budget_s
        exp = client.create_experiment(EXPERIMENT)
        hexp = client.create_experiment(HISTORY_EXPERIMENT)
        result["load_runs"] = load_runs(client, ds, exp, args.load_threads if args.load == "server" else 1, deadline)
        print(f"mlflow: {ds.runs:,} runs loaded in {result['load_runs']['seconds']} s", file=sys.stderr, flush=True)
        hid, result["load_history"] = load_history(client, ds, hexp, deadline)
        print(f"mlflow: {ds.points:,} points loaded in {result['load_history']['seconds']} s", file=sys.stderr,
              flush=True)
        if args.load == "direct":
            result["server_start_s"] = round(server.start(), 2)
            client = MlflowClient(server.uri)

        def search():
            return client.search_runs([exp], filter_string=FILTER_MLFLOW, order_by=ORDER_MLFLOW, max_results=PAGE)

        r = timed(search, args.repeat, args.budget_s)
        page = r.pop("result")
        names = [x.info.run_name for x in page]
        result["runs_table"] = {"api": f"MlflowClient.search_runs(filter_string={FILTER_MLFLOW!r}, "
                                       f"order_by={ORDER_MLFLOW}, max_results={PAGE})",
                                **r, "rows": len(page), "page_as_expected": names == ds.expected_page(),
                                "params_per_row": len(page[0].data.params) if page else None}
        print(f"mlflow search_runs p50 {r['p50_ms']} ms", file=sys.stderr, flush=True)
        r = timed(lambda: client.get_metric_history(hid, HISTORY_KEY), args.repeat, args.budget_s, warmup=1)
        hist = r.pop("result")
        result["history"] = {"api": "MlflowClient.get_metric_history(run_id, key) (every point)", **r,
                             "rows": len(hist), "complete": len(hist) == ds.points}
        print(f"mlflow get_metric_history p50 {r['p50_ms']} ms", file=sys.stderr, flush=True)
        result["db_mib"] = round(server.db.stat().st_size / 2**20, 1)
    except Exception:
        result["errors"].append(traceback.format_exc())
        raise
    finally:
        server.stop()
        write_json(args.out, result)


if __name__ == "__main__":
    main()
