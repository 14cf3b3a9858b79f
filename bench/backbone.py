"""Backbone benchmark: workload W through SDK -> embedded broker -> projector -> SQL.

W = 10 runs x (20 params, 5 tags, 20 metrics x 500 steps) = 100,000 metric points.

Reports SDK time per point inside the training loop, points/s until every point
is visible in SQL, and event-to-query freshness p50/p99 (one point logged, then
polled with SQL until visible). Then (unless --signing off) `modelog init` makes the
benchmark's principal the bootstrap admin and the workload runs again with every event
signed (Ed25519, one signature per batch event; decision 0014): the signing cost is the
difference in the loop and end to end. Prints a table and writes bench/results/backbone.json.

    python bench/backbone.py [--storage s3|memory] [--runs 10] [--steps 500] [--probes 200] [--repeat 3]
                             [--signing on|off]

With --repeat N the workload runs N times against the same broker and processor and
the table reports the median (JSON keeps every repetition).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = {"sdk_us_per_point": 2.0, "points_per_s_into_views": 100_000, "freshness_p99_ms": 1000}


def machine() -> dict:
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def workload(client, runs: int, params: int, tags: int, metrics: int, steps: int, rep: int = 0) -> dict:
    keys = [f"metric_{j:02d}" for j in range(metrics)]
    in_loop = 0.0
    start = time.perf_counter()
    for r in range(runs):
        with client.start_run(experiment=f"bench-w{rep}", name=f"w-{r}", tags={f"tag_{t}": f"v{t}" for t in range(tags)}) as run:
            run.log_params({f"param_{p:02d}": p * 0.1 for p in range(params)})
            for step in range(steps):
                values = {k: step * 0.001 + j for j, k in enumerate(keys)}
                t0 = time.perf_counter()
                run.log_metrics(values, step=step)
                in_loop += time.perf_counter() - t0
    published = time.perf_counter() - start
    waited = client.wait_projected(timeout=300)
    total = time.perf_counter() - start
    points = runs * metrics * steps
    return {"points": points, "sdk_us_per_point": in_loop / points * 1e6, "publish_s": published,
            "visible_s": total, "points_per_s_into_views": points / total, "catch_up_after_last_end_s": waited}


def freshness(client, settings, probes: int) -> dict:
    import modelog

    lat = []
    with client.start_run(experiment="bench-freshness", name="probe") as run:
        for i in range(probes):
            t0 = time.perf_counter()
            run.log_metric("probe", float(i), step=i)
            while True:
                got = modelog.sql_arrow(f"SELECT max(step) AS s FROM metrics WHERE run_id = '{run.id}'",
                                        settings).column("s")[0].as_py()
                if got is not None and got >= i:
                    break
                time.sleep(0.002)
            lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    return {"probes": probes, "freshness_p50_ms": statistics.median(lat),
            "freshness_p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))], "freshness_max_ms": lat[-1]}


def signing(settings, args) -> dict:
    """`modelog init`, then the workload again with every event signed; the sign cost of one batch event."""
    import timeit

    import modelog
    from modelog import Client
    from modelog.sdk.keys import bootstrap
    from modelog.wire.codec import Codec
    from modelog.wire.signing import signer_for

    bootstrap(settings, program="bench")
    deadline = time.monotonic() + 60
    while not modelog.sql_arrow("SELECT 1 FROM signing_keys WHERE bootstrap", settings).num_rows:
        if time.monotonic() > deadline:
            raise TimeoutError("the bootstrap key was not projected")
        time.sleep(0.05)
    client = Client(settings)
    assert client.emitter.signer is not None, "the benchmark's client has no signing key"
    reps = [workload(client, args.runs, 20, 5, 20, args.steps, 100 + rep) for rep in range(args.repeat)]
    client.close()
    median = {k: statistics.median(r[k] for r in reps) for k in reps[0]}
    points = [{"key": f"metric_{j % 20:02d}", "value": j * 0.5, "step": j, "timestamp": 1_760_000_000_000_000 + j}
              for j in range(5000)]
    value = Codec().encode("MetricsLogged", {
        "envelope": {"event_id": "0190f5e0-aaaa-7000-8000-000000000001", "event_type": "MetricsLogged",
                     "occurred_at": 1, "actor": {"principal": "b", "kind": "USER"},
                     "source": {"host": "h", "pid": 1, "program": "bench", "sdk_version": "0"},
                     "entity": {"type": "run", "key": "r"}}, "run_id": "r", "points": points})
    signer = signer_for(settings)
    n = 200
    sign_us = min(timeit.repeat(lambda: signer.headers("t", "e", value), number=n, repeat=5)) / n * 1e6
    verified = modelog.sql_arrow("SELECT count(*) FILTER (WHERE verified) AS v, count(*) AS n FROM audit_log "
                                 "WHERE entity_key IN (SELECT run_id FROM runs WHERE regexp_matches(experiment, '^bench-w1[0-9]{2}$'))",
                                 settings).to_pylist()[0]
    return {"repetitions": reps, "median": median, "sign_us_per_event": sign_us, "event_bytes": len(value),
            "verified_events": verified["v"], "events": verified["n"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storage", choices=["s3", "memory"], default="s3")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--signing", choices=["on", "off"], default="on",
                    help="also run the workload with signed events (after modelog init) and report the cost")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "backbone.json")
    args = ap.parse_args()

    from modelog import Client, Settings
    from modelog.local.broker import EmbeddedBroker
    from modelog.local.processes import start_processor_background, stop_processor
    from modelog.wire.home import running_processor

    home = Path(tempfile.mkdtemp(prefix="modelog-bench-"))
    broker = EmbeddedBroker(home, storage=args.storage)
    settings = Settings.load(env={}, home=home, bootstrap=broker.start(), session_timeout_ms=2000)
    try:
        start_processor_background(settings)
        client = Client(settings)
        t0 = time.perf_counter()  # one-time per process: connect, create topics, idempotent-producer id
        client.create_experiment("bench-warmup")
        client.flush()
        connect_s = time.perf_counter() - t0
        reps = [workload(client, args.runs, 20, 5, 20, args.steps, rep) for rep in range(args.repeat)]
        w = {k: statistics.median(r[k] for r in reps) for k in reps[0]}
        w["points"] = reps[0]["points"]
        f = freshness(client, settings, args.probes)
        client.close()
        signed = signing(settings, args) if args.signing == "on" else None
    finally:
        info = running_processor(settings)
        if info:
            stop_processor(settings, info)
        broker.stop()

    result = {"workload": f"{args.runs} runs x 20 params x 5 tags x 20 metrics x {args.steps} steps",
              "storage": args.storage, "machine": machine(), "client_connect_s": connect_s, "repeat": args.repeat, **w, **f,
              "repetitions": reps, "signed": signed,
              "targets": TARGETS}
    spread = (f"{min(r['points_per_s_into_views'] for r in reps):,.0f}-"
              f"{max(r['points_per_s_into_views'] for r in reps):,.0f}")
    rows = [
        ("SDK time per point in the training loop", f"{w['sdk_us_per_point']:.2f} us", "<= 2 us"),
        ("points/s until visible in SQL", f"{w['points_per_s_into_views']:,.0f}", ">= 100,000"),
        (f"  (range over {args.repeat} repetitions)", spread, ""),
        ("  (all points visible after)", f"{w['visible_s']:.2f} s", ""),
        ("  (one-time client connect, not in the above)", f"{connect_s:.2f} s", ""),
        ("event -> query freshness p50", f"{f['freshness_p50_ms']:.0f} ms", ""),
        ("event -> query freshness p99", f"{f['freshness_p99_ms']:.0f} ms", "<= 1000 ms"),
    ]
    if signed:
        s = signed["median"]
        rows += [
            ("signed: SDK time per point in the training loop", f"{s['sdk_us_per_point']:.2f} us", "<= 2 us"),
            ("signed: points/s until visible in SQL", f"{s['points_per_s_into_views']:,.0f}",
             f"within 10% of {w['points_per_s_into_views']:,.0f}"),
            ("  (one Ed25519 signature of a 5,000-point event)", f"{signed['sign_us_per_event']:.1f} us",
             f"= {signed['sign_us_per_event'] / 5000:.4f} us/point"),
            ("  (signed events shown verified in audit_log)", f"{signed['verified_events']:,}",
             f"of {signed['events']:,}"),
        ]
    print(f"\nmodelog backbone benchmark — {result['workload']} = {w['points']:,} points; "
          f"embedded broker ({args.storage}); {result['machine']['cpus']} CPUs, Python {result['machine']['python']}")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'result':>14}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>14}  {target}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
