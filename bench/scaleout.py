"""Scale-out benchmark: projector throughput with 1, 2 and 4 workers in one consumer group.

The log is filled once (runs x 20 metrics x steps points over 4 partitions, published by the SDK to the
embedded broker); then each configuration catches up on the whole log with a consumer group of its own:

* ``single file``: ``modelog process`` (one process, one views file: the default);
* ``lake, N workers``: ``modelog process --workers N`` (shards published to a Delta Lake lake, decisions
  0009 and 0024): by default at ``s3://scaleout-lake/<config>`` on the embedded broker's S3 server
  (``--lake dir``: a directory under the run's home).

Throughput is points / (caught up - first worker joined): the time every point takes to become visible
in SQL, without process start-up. Also reported: CPU seconds and peak RSS per process, and the two
queries of ``bench/compare.py`` on the caught-up views (median of 20, in-process). Table + JSON.

    python bench/scaleout.py [--runs 40] [--steps 1000] [--workers 1,2,4] [--storage memory|s3] [--lake s3|dir]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from backbone import machine  # noqa: E402
from compare_common import children, cpu_seconds, median_ms, peak_rss_mib  # noqa: E402

METRICS = 20
LAKE_BUCKET = "scaleout-lake"  # on the embedded broker's S3 server (--lake s3)


def fill_log(settings, runs: int, steps: int) -> int:
    from modelog import Client

    client = Client(settings)
    keys = [f"metric_{j:02d}" for j in range(METRICS)]
    for r in range(runs):
        with client.start_run(experiment="scaleout", name=f"r{r}") as run:
            run.log_params({"r": r})
            for step in range(steps):
                run.log_metrics({k: j + step * 0.001 + r * 0.01 for j, k in enumerate(keys)}, step=step)
    client.close()
    return runs * steps * METRICS


def end_offsets(settings) -> dict[tuple[str, int], int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(settings.librdkafka(**{"group.id": "scaleout-probe", "enable.auto.commit": False}))
    try:
        meta = c.list_topics(settings.tracking_topic, timeout=10).topics[settings.tracking_topic]
        out = {}
        for p in meta.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(settings.tracking_topic, p), timeout=10)
            if hi > 0:
                out[(settings.tracking_topic, p)] = hi
        return out
    finally:
        c.close()


def caught_up(settings, ends: dict) -> bool:
    from modelog.consumers.query import projected_positions

    try:
        pos = projected_positions(settings)
    except Exception:  # noqa: BLE001 -- not ready yet
        return False
    return all(pos.get(tp, 0) >= off for tp, off in ends.items())


def run_config(base, workers: int, lake: bool, ends: dict, points: int, timeout: float,
               s3_endpoint: str | None = None) -> dict:
    import dataclasses

    from modelog import sql_arrow

    tag = f"{'lake' if lake else 'file'}{workers}"
    home = base.home / tag
    home.mkdir(parents=True, exist_ok=True)
    lake_path = (f"s3://{LAKE_BUCKET}/{tag}" if s3_endpoint else home / "lake") if lake else None
    aws = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
           "AWS_REGION": "us-east-1"} if s3_endpoint else {}
    settings = dataclasses.replace(base, home=home, processor_id=f"bench-{tag}-{os.getpid()}", lake_path=lake_path,
                                   artifact_options={"endpoint": s3_endpoint, "access_key_id": "local",
                                                     "secret_access_key": "local", "region": "us-east-1"}
                                   if s3_endpoint else {})
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")}
    env.update(MODELOG_HOME=str(home), MODELOG_KAFKA_BOOTSTRAP=base.bootstrap, MODELOG_PROCESSOR_ID=settings.processor_id,
               MODELOG_SESSION_TIMEOUT_MS=str(base.session_timeout_ms))
    if lake:
        env["MODELOG_LAKE"] = str(settings.lake_path)
        env.update(aws)
    log = open(home / "process.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "modelog", "process", "--workers", str(workers)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + timeout
    ledger: dict[int, tuple[float, float]] = {}  # pid -> (cpu s, peak rss MiB), last seen
    try:
        while not caught_up(settings, ends):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{tag}: processor exited or timed out; see {home / 'process.log'}")
            for pid in [proc.pid, *children(proc.pid)]:
                c, m = cpu_seconds(pid), peak_rss_mib(pid)
                if c is not None:
                    ledger[pid] = (c, m or 0.0)
            time.sleep(0.05)
        done = time.time()
        for pid in [proc.pid, *children(proc.pid)]:
            c, m = cpu_seconds(pid), peak_rss_mib(pid)
            if c is not None:
                ledger[pid] = (c, m or 0.0)
        if workers > 1:
            joined = min(json.loads(f.read_text())["ready_at"] for f in (home / "workers").glob("*.json"))
        else:
            joined = json.loads((home / "processor.json").read_text())["ready_at"]
        queries = {}
        for name, q in (("filter_order_ms", "SELECT run_id, value FROM latest_metrics WHERE key = 'metric_00' "
                                           "AND value > 0.2 ORDER BY value DESC"),
                        ("history_ms", "SELECT step, value FROM metrics WHERE run_id = (SELECT min(run_id) FROM runs) "
                                       "AND key = 'metric_03' ORDER BY step")):
            queries[name] = median_ms(lambda q=q: sql_arrow(q, settings, cache=False), 20)["median_ms"]
        visible = sql_arrow("SELECT count(*) AS n FROM metrics", settings).column("n")[0].as_py()
        assert visible == points, f"{tag}: {visible} points visible, {points} published"
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    seconds = done - joined
    return {"config": f"{'lake' if lake else 'single file'}, {workers} worker{'s' if workers > 1 else ''}",
            "workers": workers, "lake": lake, "points": points, "seconds": seconds, "points_per_s": points / seconds,
            "cpu_s": sum(c for c, _ in ledger.values()),
            "peak_rss_mib_per_process": sorted(round(m, 1) for _, m in ledger.values()),
            **queries}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--storage", choices=["s3", "memory"], default="memory")
    ap.add_argument("--lake", choices=["s3", "dir"], default="s3",
                    help="the lake on the embedded broker's S3 server (default) or in a directory")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--session-timeout-ms", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "scaleout.json")
    args = ap.parse_args()

    from modelog import Settings
    from modelog.local.broker import EmbeddedBroker

    home = Path(tempfile.mkdtemp(prefix="modelog-scaleout-"))
    broker = EmbeddedBroker(home / "broker", storage=args.storage)
    # --session-timeout-ms: 2000 joins fast; on a loaded machine heartbeats miss it and the group rebalances
    settings = Settings.load(env={}, home=home, bootstrap=broker.start(), session_timeout_ms=args.session_timeout_ms)
    results = []
    try:
        t0 = time.perf_counter()
        points = fill_log(settings, args.runs, args.steps)
        ends = end_offsets(settings)
        print(f"log filled: {points:,} points in {time.perf_counter() - t0:.1f} s over {len(ends)} partitions",
              flush=True)
        s3_endpoint = None
        if args.lake == "s3":
            state = json.loads(broker.state_file.read_text())
            s3_endpoint = f"http://127.0.0.1:{state['s3_port']}"  # the broker's own S3 server (both storages)
            (broker.dir / "s3" / LAKE_BUCKET).mkdir(parents=True, exist_ok=True)  # a bucket is a directory there
        configs = [(1, False)] + [(int(n), True) for n in args.workers.split(",")]
        for workers, lake in configs:
            r = run_config(settings, workers, lake, ends, points, args.timeout, s3_endpoint)
            print(f"  {r['config']:<22} {r['points_per_s']:>10,.0f} points/s", flush=True)
            results.append(r)
    finally:
        broker.stop()
    base = results[0]["points_per_s"]
    one = next((r["points_per_s"] for r in results if r["lake"] and r["workers"] == 1), base)
    print(f"\nmodelog scale-out — {points:,} points, {len(ends)} partitions, embedded broker ({args.storage}), "
          f"lake {'s3:// (embedded S3 server)' if args.lake == 's3' else 'directory'}; "
          f"{os.cpu_count()} CPUs, Python {machine()['python']}")
    print(f"{'configuration':<22} {'points/s':>10} {'vs file':>8} {'vs 1 wkr':>8} {'CPU s':>7} "
          f"{'peak RSS MiB per process':<28} {'filter ms':>9} {'history ms':>10}")
    for r in results:
        print(f"{r['config']:<22} {r['points_per_s']:>10,.0f} {r['points_per_s'] / base:>7.2f}x "
              f"{r['points_per_s'] / one:>7.2f}x {r['cpu_s']:>7.1f} {str(r['peak_rss_mib_per_process']):<28} "
              f"{r['filter_order_ms']:>9.1f} {r['history_ms']:>10.1f}")
    out = {"machine": machine(), "storage": args.storage, "lake": args.lake, "points": points, "partitions": len(ends),
           "runs": args.runs, "steps": args.steps, "metrics": METRICS, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
