"""MLflow's side of ``bench/compare.py`` (run by it with the peers' venv, bench/.venv-peers; writes JSON).

Each phase gets a fresh tracking server (``mlflow server`` with a sqlite backend on 127.0.0.1,
``--workers 1``) and a fresh database, unless it says otherwise:

1. ``log_batch``: workload W, metrics sent in calls of <= 1000; timed until the last call returned (the
   server committed to sqlite, so the points are queryable) plus one ``get_metric_history``; every
   (run, key) history is then read back through the server to verify the count. CPU seconds and peak RSS
   of the training process and of the server's processes over that window;
2. queries on phase 1's data and server: ``search_runs`` (filter on one metric, order by another) through
   ``MlflowClient`` (a list of Run) and ``mlflow.search_runs`` (pandas), and ``get_metric_history``;
3. per-point ``log_metric``: time-boxed (``--per-point-seconds``), extrapolated to W's point count;
4. the file store (``file:`` URI, no server; needs MLFLOW_ALLOW_FILE_STORE=true in MLflow 3.x) with ``log_batch``;
5. durability: W in a paced training loop with the synchronous client (``log_batch`` every 1000 points); the
   server is stopped (SIGTERM to its processes) in the middle and started again on the same port
   ``--outage-s`` after it was gone; points acknowledged vs points in sqlite afterwards;
6. the same with MLflow's asynchronous logging (``log_batch(..., synchronous=False)``).

MLflow's job runner (MLFLOW_SERVER_ENABLE_JOB_EXECUTION, on by default in 3.x: a job runner and seven huey
consumer processes, ~1 GiB RSS) is switched off: tracking does not use it, and counting it would be unfair.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import traceback
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare_common import (  # noqa: E402
    runner_parser,
    W,
    Outage,
    ProcessMeter,
    Stalls,
    machine,
    median_ms,
    pace,
    record_spawn,
    terminate_tree,
    write_json,
)

os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # for phase 4 (read when a file store is built)
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
BATCH = 1000


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One ``mlflow server`` (sqlite backend) under ``root``; stop/start keep the port and the database."""

    def __init__(self, root: Path, workdir: Path, port: int | None = None) -> None:
        self.root = root
        self.workdir = workdir
        self.port = port or free_port()
        self.db = root / "mlflow.db"
        self.proc: subprocess.Popen | None = None
        self.uri = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 180.0) -> float:
        t0 = time.perf_counter()
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", f"sqlite:///{self.db}",
               "--default-artifact-root", str(self.root / "artifacts"), "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", "1"]
        with (self.root / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, env=env)
        record_spawn(self.workdir, self.proc.pid, "mlflow server", group=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({self.proc.returncode}); see {self.root / 'server.log'}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"mlflow server not ready after {timeout:.0f}s; see {self.root / 'server.log'}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            terminate_tree(self.proc.pid, timeout=15)
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


def versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("mlflow", "mlflow-skinny", "sqlalchemy", "uvicorn", "pandas")}


def meter(server: Server | None) -> ProcessMeter:
    m = ProcessMeter()
    m.add("training process (client)", os.getpid(), with_children=False)
    if server is not None:
        m.add("tracking server (mlflow server + uvicorn worker)", server.pid)
    return m


def log_batch_workload(client, w: W, exp_name: str, m: ProcessMeter, synchronous_check: bool = True) -> dict:
    from mlflow.entities import Metric, Param

    in_loop = 0.0
    run_ids = []
    m.start()
    start = time.perf_counter()
    exp = client.create_experiment(exp_name)
    for r in range(w.runs):
        run = client.create_run(exp, run_name=f"w-{r}", tags=w.tag_dict())
        rid = run.info.run_id
        run_ids.append(rid)
        client.log_batch(rid, params=[Param(k, str(v)) for k, v in w.param_dict().items()])
        buf = []
        for step in range(w.steps):
            values = w.values(r, step)
            t0 = time.perf_counter()
            ts = int(time.time() * 1000)
            buf.extend(Metric(k, v, ts, step) for k, v in values.items())
            if len(buf) >= BATCH:
                client.log_batch(rid, metrics=buf)
                buf = []
            in_loop += time.perf_counter() - t0
        if buf:
            t0 = time.perf_counter()
            client.log_batch(rid, metrics=buf)
            in_loop += time.perf_counter() - t0
        client.set_terminated(rid)
    last = client.get_metric_history(run_ids[-1], w.keys[-1]) if synchronous_check else []
    total = time.perf_counter() - start
    rows = m.stop()
    return {"experiment_id": exp, "run_ids": run_ids, "points": w.points, "seconds": total,
            "points_per_s": w.points / total, "us_per_point_in_loop": in_loop / w.points * 1e6,
            "last_history_len": len(last), "processes": rows, "totals": ProcessMeter.totals(rows)}


def verify_histories(client, run_ids: list[str], w: W) -> int:
    return sum(len(client.get_metric_history(rid, k)) for rid in run_ids for k in w.keys)


def queries(client, uri: str, w: W, exp: str, run_id: str, reps: int, where: str) -> list[dict]:
    import mlflow

    mlflow.set_tracking_uri(uri)
    t = w.query_threshold()
    flt, order = f"metrics.metric_00 > {t}", ["metrics.metric_01 DESC"]
    out = []
    for name, api, fn, expect in (
        ("runs filtered by a metric, ordered by another", f"MlflowClient.search_runs ({where})",
         lambda: client.search_runs([exp], filter_string=flt, order_by=order), w.expected_filter_rows()),
        ("runs filtered by a metric, ordered by another", f"mlflow.search_runs -> pandas ({where})",
         lambda: mlflow.search_runs(experiment_ids=[exp], filter_string=flt, order_by=order), w.expected_filter_rows()),
        ("one metric's history", f"MlflowClient.get_metric_history ({where})",
         lambda: client.get_metric_history(run_id, "metric_00"), w.steps),
    ):
        out.append({"query": name, "api": api, "expected_rows": expect, "filter": flt if "filtered" in name else None,
                    **median_ms(fn, reps)})
    return out


def per_point(client, w: W, seconds: float, m: ProcessMeter) -> dict:
    in_loop = 0.0
    n = 0
    m.start()
    start = time.perf_counter()
    exp = client.create_experiment("compare-per-point")
    stop = False
    run_ids = []
    for r in range(w.runs):
        rid = client.create_run(exp, run_name=f"p-{r}", tags=w.tag_dict()).info.run_id
        run_ids.append(rid)
        for step in range(w.steps):
            for k, v in w.values(r, step).items():
                t0 = time.perf_counter()
                client.log_metric(rid, k, v, step=step)
                in_loop += time.perf_counter() - t0
                n += 1
            if time.perf_counter() - start >= seconds:
                stop = True
                break
        client.set_terminated(rid)
        if stop:
            break
    elapsed = time.perf_counter() - start
    rows = m.stop()
    rate = n / elapsed
    factor = w.points / n
    ext_rows = [{**r, "cpu_s_measured": r["cpu_s"], "cpu_s": None if r["cpu_s"] is None else round(r["cpu_s"] * factor, 2)}
                for r in rows]
    return {"variant": "log_metric per point (sqlite, server)", "extrapolated": True, "points_measured": n,
            "seconds_measured": elapsed, "points": w.points, "seconds": w.points / rate, "points_per_s": rate,
            "us_per_point_in_loop": in_loop / n * 1e6, "run_ids": run_ids,
            "note": f"time-boxed to {seconds:.0f} s ({n:,} points), extrapolated linearly to {w.points:,} points "
                    f"(time and CPU seconds; peak RSS as measured)",
            "processes": ext_rows, "totals": ProcessMeter.totals(ext_rows)}


def stored_points(db: Path, exp_id: str) -> dict:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT r.name, m.key, m.step FROM metrics m JOIN runs r ON m.run_uuid = r.run_uuid "
                           "WHERE r.experiment_id = ?", (int(exp_id),)).fetchall()
    finally:
        con.close()
    return {"rows": len(rows), "distinct": set(rows)}


def durability(server: Server, w: W, pace_s: float, at_s: float, down_s: float, synchronous: bool) -> dict:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(server.uri)
    exp = client.create_experiment(f"compare-durability-{'sync' if synchronous else 'async'}")
    outage = Outage(at_s, down_s, stop=server.stop, start=server.start)
    logged: set = set()     # (run name, key, step) whose call returned without an exception
    per_run_ok: dict = {}   # run name -> no exception raised to the caller for this run
    errors: list[str] = []
    ops = []
    stalls = Stalls()
    t0 = time.perf_counter()
    outage.begin()
    i = 0
    for r in range(w.runs):
        name = f"d-{r}"
        per_run_ok[name] = True
        try:
            with stalls("create_run"):
                rid = client.create_run(exp, run_name=name, tags=w.tag_dict()).info.run_id
            with stalls("log_batch (params)"):
                op = client.log_batch(rid, params=[Param(k, str(v)) for k, v in w.param_dict().items()],
                                      synchronous=synchronous)
            if op is not None:
                ops.append((name, [], op))
        except Exception as exc:
            errors.append(f"run {r} start: {type(exc).__name__}: {str(exc)[:200]}")
            per_run_ok[name] = False
            i = (r + 1) * w.steps
            continue
        buf, keys = [], []
        for step in range(w.steps):
            pace(t0, i, pace_s)
            i += 1
            ts = int(time.time() * 1000)
            for k, v in w.values(r, step).items():
                buf.append(Metric(k, v, ts, step))
                keys.append((name, k, step))
            if len(buf) >= BATCH or step == w.steps - 1:
                try:
                    with stalls("log_batch"):
                        op = client.log_batch(rid, metrics=buf, synchronous=synchronous)
                    logged.update(keys)
                    if op is not None:
                        ops.append((name, keys, op))
                except Exception as exc:
                    errors.append(f"run {r} step {step}: {type(exc).__name__}: {str(exc)[:200]}")
                    per_run_ok[name] = False
                buf, keys = [], []
        try:
            with stalls("set_terminated"):
                client.set_terminated(rid)
        except Exception as exc:
            errors.append(f"run {r} end: {type(exc).__name__}: {str(exc)[:200]}")
            per_run_ok[name] = False
    loop_s = time.perf_counter() - t0
    flush_error = None
    if not synchronous:
        try:
            client._tracking_client.store.flush_async_logging()  # what end_run does; it logs failures, raises none
        except Exception as exc:
            flush_error = f"{type(exc).__name__}: {exc}"
    waited_errors = 0
    for _, _, op in ops:  # errors of async calls surface only if the caller waits on each returned future
        try:
            op.wait()
        except Exception:
            waited_errors += 1
    log = outage.join(timeout=300)
    stored = stored_points(server.db, exp)
    acked = {p for p in logged if per_run_ok.get(p[0])}
    lost = len(acked - stored["distinct"])
    lost_calls = len(logged - stored["distinct"])
    return {"variant": f"log_batch {'synchronous' if synchronous else 'asynchronous (synchronous=False)'} "
                       f"(sqlite, server)",
            "pace_ms_per_step": pace_s * 1000,
            "outage": {**log, "what": f"SIGTERM to the server's processes; started again on port {server.port} "
                                      f"{down_s:.0f} s after they were gone (the server then needs a few s to start)"},
            "loop_s": round(loop_s, 2), "points_attempted": w.points, "points_logged": len(logged),
            "points_acknowledged": len(acked),
            "points_not_acknowledged_error_raised": w.points - len(acked),
            "points_stored": len(stored["distinct"]), "rows_stored": stored["rows"],
            "acknowledged_but_lost": lost, "returned_ok_but_lost": lost_calls,
            "errors_raised": len(errors), "errors": errors[:10], "flush_error": flush_error, **stalls.as_dict(),
            "async_futures_failed_when_waited": waited_errors if not synchronous else None}


def main() -> None:
    ap = runner_parser(__doc__)
    ap.add_argument("--query-reps", type=int, default=20)
    ap.add_argument("--per-point-seconds", type=float, default=20.0)
    args = ap.parse_args()

    import logging

    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    w = W(args.runs, args.steps)
    result: dict = {"system": "mlflow", "versions": versions(), "machine": machine(), "workload": w.as_dict(),
                    "errors": [], "phase_s": {}, "notes": [
                        "server: mlflow server --backend-store-uri sqlite:///... --host 127.0.0.1 --workers 1 "
                        "(uvicorn); MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false (job runner off: unused by tracking)",
                        "file store: MLflow 3.x refuses it unless MLFLOW_ALLOW_FILE_STORE=true (maintenance mode)"]}
    servers: list[Server] = []
    phases = result["phase_s"]

    def fresh_server(name: str) -> Server:
        s = Server(args.workdir / name, args.workdir)
        servers.append(s)
        result.setdefault("server_start_s", {})[name] = round(s.start(), 2)
        return s

    try:
        # 1 + 2: log_batch through the server, then the queries on the same data
        tp = time.perf_counter()
        s = fresh_server("sqlite-log-batch")
        client = MlflowClient(s.uri)
        client.search_experiments()  # one-time connect, not timed
        reps = [log_batch_workload(client, w, f"compare-w{rep}", meter(s)) for rep in range(args.repeat)]
        best = sorted(reps, key=lambda r: r["points_per_s"])[len(reps) // 2]
        best["verified_points_via_get_metric_history"] = verify_histories(client, best["run_ids"], w)
        result["log_batch"] = {"variant": f"log_batch <= {BATCH} metrics/call (sqlite, server)", **best,
                               "repetitions": [{k: r[k] for k in ("points_per_s", "seconds", "us_per_point_in_loop")}
                                               for r in reps]}
        print(f"mlflow log_batch: {best['points_per_s']:,.0f} points/s", file=sys.stderr)
        phases["log_batch"] = round(time.perf_counter() - tp, 1)
        tp = time.perf_counter()
        result["queries"] = queries(client, s.uri, w, reps[0]["experiment_id"], reps[0]["run_ids"][0],
                                    args.query_reps, "server")
        phases["queries"] = round(time.perf_counter() - tp, 1)
        s.stop()

        # 3: per-point log_metric, time-boxed
        tp = time.perf_counter()
        s = fresh_server("sqlite-per-point")
        client = MlflowClient(s.uri)
        client.search_experiments()
        pp = per_point(client, w, args.per_point_seconds, meter(s))
        pp["verified_points_via_get_metric_history"] = sum(
            len(client.get_metric_history(rid, k)) for rid in pp.pop("run_ids") for k in w.keys)
        result["log_metric"] = pp
        print(f"mlflow log_metric: {pp['points_per_s']:,.0f} points/s (extrapolated)", file=sys.stderr)
        s.stop()
        phases["log_metric"] = round(time.perf_counter() - tp, 1)

        # 4: the file store (no server)
        tp = time.perf_counter()
        fs_uri = (args.workdir / "filestore").as_uri()
        fclient = MlflowClient(fs_uri)
        fclient.search_experiments()
        fb = log_batch_workload(fclient, w, "compare-w0", meter(None))
        fb["verified_points_via_get_metric_history"] = verify_histories(fclient, fb["run_ids"], w)
        result["file_store"] = {"variant": f"log_batch <= {BATCH} metrics/call (file store, no server)", **fb}
        result["queries"] += queries(fclient, fs_uri, w, fb["experiment_id"], fb["run_ids"][0], args.query_reps,
                                     "file store")
        print(f"mlflow file store: {fb['points_per_s']:,.0f} points/s", file=sys.stderr)
        phases["file_store"] = round(time.perf_counter() - tp, 1)

        # 5 + 6: durability
        if args.durability:
            result["durability"] = []
            for synchronous in (True, False):
                tp = time.perf_counter()
                s = fresh_server(f"durability-{'sync' if synchronous else 'async'}")
                try:
                    result["durability"].append(
                        durability(s, w, args.pace_ms / 1000, args.outage_at, args.outage_s, synchronous))
                except Exception as exc:
                    result["errors"].append(traceback.format_exc())
                    result["durability"].append({"variant": f"log_batch synchronous={synchronous}",
                                                 "error": f"{type(exc).__name__}: {exc}"})
                finally:
                    s.stop()
                phases[f"durability_{'sync' if synchronous else 'async'}"] = round(time.perf_counter() - tp, 1)
    except Exception:
        result["errors"].append(traceback.format_exc())
        raise
    finally:
        for s in servers:
            s.stop()
        write_json(args.out, result)


if __name__ == "__main__":
    main()
