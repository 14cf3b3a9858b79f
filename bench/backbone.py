"""Backbone benchmark: workload W through SDK -> embedded broker -> projector -> SQL.

W = 10 runs x (20 params, 5 tags, 20 metrics x 500 steps) = 100,000 metric points.

Reports SDK time per point inside the training loop, points/s until every point
is visible in SQL, and event-to-query freshness p50/p99 (one point logged, then
polled with SQL until visible). Then (unless --signing off) the same workload runs on a
second, governed stack (`modelog init` makes the benchmark's principal the bootstrap admin, so every
event is signed with Ed25519, one signature per batch event, and the processor verifies and authorizes
each; decisions 0015, 0017): the two stacks run side by side and the repetitions alternate between
them (A B B A ...), so both see the same machine load and the same growing log. The signing cost is
the difference in the loop and end to end. Prints a table and writes bench/results/backbone.json.

    python bench/backbone.py [--storage s3|memory] [--runs 10] [--steps 500] [--probes 200] [--repeat 5]
                             [--signing on|off]

With --repeat N the workload runs N times against each stack's broker and processor and
the table reports the medians (JSON keeps every repetition).
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


def acknowledged(client, n: int = 50) -> dict:
    """One small event published and flushed, ``n`` times: the round trip until the broker acknowledges it
    (what every ``end_run``, ``flush`` and registry call waits for at least once)."""
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        client.create_experiment(f"bench-ack-{i}")
        client.flush()
        lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    return {"ack_p50_ms": statistics.median(lat), "ack_p99_ms": lat[min(n - 1, int(0.99 * n))]}


class Stack:
    """One embedded broker and one processor in a home of their own; `signed` makes it governed."""

    def __init__(self, storage: str, signed: bool) -> None:
        from modelog import Settings
        from modelog.local.broker import EmbeddedBroker
        from modelog.local.processes import start_processor_background

        self.home = Path(tempfile.mkdtemp(prefix="modelog-bench-"))
        self.broker = EmbeddedBroker(self.home, storage=storage)
        self.settings = Settings.load(env={}, home=self.home, bootstrap=self.broker.start(), session_timeout_ms=2000)
        start_processor_background(self.settings)
        if signed:
            governed(self.settings)

    def stop(self) -> None:
        from modelog.local.processes import stop_processor
        from modelog.wire.home import running_processor

        info = running_processor(self.settings)
        if info:
            stop_processor(self.settings, info)
        self.broker.stop()


def governed(settings) -> None:
    """`modelog init`: the benchmark's principal becomes the bootstrap admin and signs from now on."""
    import modelog
    from modelog.sdk.keys import bootstrap

    bootstrap(settings, program="bench")
    deadline = time.monotonic() + 60
    while not modelog.sql_arrow("SELECT 1 FROM signing_keys WHERE bootstrap", settings).num_rows:
        if time.monotonic() > deadline:
            raise TimeoutError("the bootstrap key was not projected")
        time.sleep(0.05)


def sign_cost(settings) -> tuple[float, int]:
    """Microseconds for one signature of a 5,000-point MetricsLogged, and its size."""
    import timeit

    from modelog.wire.codec import Codec
    from modelog.wire.signing import signer_for

    points = [{"key": f"metric_{j % 20:02d}", "value": j * 0.5, "step": j, "timestamp": 1_760_000_000_000_000 + j}
              for j in range(5000)]
    value = Codec().encode("MetricsLogged", {
        "envelope": {"event_id": "0190f5e0-aaaa-7000-8000-000000000001", "event_type": "MetricsLogged",
                     "occurred_at": 1, "actor": {"principal": "b", "kind": "USER"},
                     "source": {"host": "h", "pid": 1, "program": "bench", "sdk_version": "0"},
                     "entity": {"type": "run", "key": "r"}}, "run_id": "r", "points": points})
    signer = signer_for(settings)
    n = 200
    return min(timeit.repeat(lambda: signer.headers("t", "e", value), number=n, repeat=5)) / n * 1e6, len(value)


def verified_counts(settings) -> dict:
    import modelog

    return modelog.sql_arrow("SELECT count(*) FILTER (WHERE verified) AS v, count(*) AS n FROM audit_log "
                             "WHERE entity_key IN (SELECT run_id FROM runs WHERE starts_with(experiment, 'bench-w'))",
                             settings).to_pylist()[0]


def alternate(repeat: int) -> list[bool]:
    """A B B A A B B A ...: which stack (signed or not) each slot runs, balanced against drift in load."""
    order: list[bool] = []
    for i in range(repeat):
        order += [False, True] if i % 2 == 0 else [True, False]
    return order


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storage", choices=["s3", "memory"], default="s3")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--signing", choices=["on", "off"], default="on",
                    help="also run the workload with signed events (after modelog init) and report the cost")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "backbone.json")
    args = ap.parse_args()

    from modelog import Client

    stacks = {False: Stack(args.storage, signed=False)}
    try:
        if args.signing == "on":
            stacks[True] = Stack(args.storage, signed=True)
        clients = {signed: Client(stack.settings) for signed, stack in stacks.items()}
        connect_s = 0.0
        for signed, client in clients.items():  # one-time per process: connect, create topics, producer id
            t0 = time.perf_counter()
            client.create_experiment("bench-warmup")
            client.flush()
            connect_s = max(connect_s, time.perf_counter() - t0)
        if True in clients:
            assert clients[True].emitter.signer is not None, "the governed stack's client has no signing key"
        runs: dict[bool, list[dict]] = {False: [], True: []}
        order = alternate(args.repeat) if True in clients else [False] * args.repeat
        for slot, signed in enumerate(order):
            runs[signed].append(workload(clients[signed], args.runs, 20, 5, 20, args.steps, slot))
        reps = runs[False]
        w = {k: statistics.median(r[k] for r in reps) for k in reps[0]}
        w["points"] = reps[0]["points"]
        f = freshness(clients[False], stacks[False].settings, args.probes)
        f.update(acknowledged(clients[False]))
        signed = None
        if True in clients:
            sreps = runs[True]
            sign_us, event_bytes = sign_cost(stacks[True].settings)
            counts = verified_counts(stacks[True].settings)
            ratios = [s["points_per_s_into_views"] / u["points_per_s_into_views"] for s, u in zip(sreps, reps)]
            signed = {"repetitions": sreps, "median": {k: statistics.median(r[k] for r in sreps) for k in sreps[0]},
                      "throughput_ratio_per_pair": ratios, "throughput_ratio_median": statistics.median(ratios),
                      "sign_us_per_event": sign_us, "event_bytes": event_bytes,
                      "verified_events": counts["v"], "events": counts["n"]}
        for client in clients.values():
            client.close()
    finally:
        for stack in stacks.values():
            stack.stop()

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
        ("one event published + flushed (acknowledged), p50 / p99",
         f"{f['ack_p50_ms']:.1f} / {f['ack_p99_ms']:.1f} ms", ""),
    ]
    if signed:
        s = signed["median"]
        rows += [
            ("signed: SDK time per point in the training loop", f"{s['sdk_us_per_point']:.2f} us", "<= 2 us"),
            ("signed: points/s until visible in SQL", f"{s['points_per_s_into_views']:,.0f}",
             f"within 10% of {w['points_per_s_into_views']:,.0f}"),
            ("  (signed / unsigned, median of the pairs)", f"{signed['throughput_ratio_median']:.2f}", ">= 0.90"),
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
