"""Monitoring benchmark: serving-side cost of Monitor.log, and predictions/s one drift processor sustains.

1. Serving cost: a loop calls ``monitor.log(features, prediction)`` with 20 numeric + 5 categorical
   features, against the embedded broker (the real Kafka emitter behind it); reports mean and p99
   microseconds per call in the serving thread and how many were dropped (buffer policy "drop").
2. Drift processor throughput: the monitoring topic is pre-filled with a reference profile, a
   configuration (windows of 1,000 rows) and N predictions; then ``modelog drift`` starts and we
   time, from its "ready", until every window's DriftMeasured event is on the log.

    python bench/monitoring.py [--calls 200000] [--predictions 200000] [--rate 100000 --seconds 10]
                               [--frame-predictions 1000000] [--storage memory|s3]

3. Publishing rate: the same loop flat out, then paced at --rate for --seconds, with the default
   Monitor; predictions/s published = sent / time until close() has them acknowledged, and drops.
4. Batch scoring: ``Monitor.log_frame`` of --frame-predictions predictions in frames of 10,000 rows
   (columns encoded as they are, no dict per row); predictions/s until acknowledged.

Prints a table and writes bench/results/monitoring.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
NUM, CAT = 20, 5


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {f"n{i:02d}": rng.normal(shift * (i % 3), 1 + 0.1 * i, n) for i in range(NUM)}
    for j in range(CAT):
        data[f"c{j}"] = rng.choice([f"v{k}" for k in range(4 + j)], n)
    return pd.DataFrame(data)


def serving_cost(client, calls: int) -> dict:
    from modelog import Monitor

    rows = frame(1000, 1).to_dict(orient="records")
    lat = np.empty(calls)
    m = Monitor("bench-serving", "prod", client=client)
    perf = time.perf_counter
    for i in range(calls):
        r = rows[i % 1000]
        t0 = perf()
        m.log(r, prediction=0.5)
        lat[i] = perf() - t0
    t = perf()
    m.close()
    flush_s = perf() - t
    st = m.stats()
    return {"calls": calls, "mean_us_per_call": float(lat.mean() * 1e6), "p99_us_per_call": float(np.quantile(lat, 0.99) * 1e6),
            "dropped": st["dropped"], "sent": st["sent"], "final_flush_s": flush_s}


def publish_rate(client, count: int, rate: float | None) -> dict:
    """Monitor.log from one thread, as fast as it goes (rate None) or paced at ``rate`` per second, with the
    default Monitor (buffer of 100,000, on_full="drop"); the clock stops when close() has every batch
    acknowledged by the broker. Drops are what the Monitor itself counted (never silent)."""
    from modelog import Monitor

    rows = frame(1000, 4).to_dict(orient="records")
    m = Monitor("bench-rate", "prod", client=client)
    perf = time.perf_counter
    cpu0 = time.process_time()
    t0 = perf()
    if rate is None:
        for i in range(count):
            m.log(rows[i % 1000], prediction=0.5)
    else:
        burst = max(1, int(rate / 1000))  # bursts every millisecond
        for start in range(0, count, burst):
            for i in range(start, min(count, start + burst)):
                m.log(rows[i % 1000], prediction=0.5)
            ahead = t0 + (start + burst) / rate - perf()
            if ahead > 0:
                time.sleep(ahead)
    logged_s = perf() - t0
    error = None
    try:
        m.close()
    except Exception as exc:  # noqa: BLE001 -- reported: predictions still buffered when close gave up
        error = str(exc)
    total_s = perf() - t0
    cpu_s = time.process_time() - cpu0
    st = m.stats()
    return {"calls": count, "target_rate": rate, "logging_s": logged_s, "until_acknowledged_s": total_s,
            "offered_per_s": count / logged_s, "published_per_s": st["sent"] / total_s,
            "sent": st["sent"], "dropped": st["dropped"], "unsent_at_close": count - st["sent"] - st["dropped"],
            "close_error": error, "process_cpu_us_per_prediction": cpu_s / max(st["sent"], 1) * 1e6}


def frame_rate(client, count: int, frame_rows: int = 10_000) -> dict:
    """Monitor.log_frame (batch scoring) from one thread: ``count`` predictions in frames of ``frame_rows``,
    each frame encoded column by column and published in events of 1,000 rows; the clock stops when close()
    has every event acknowledged by the broker."""
    from modelog import Monitor

    live = frame(frame_rows, 5)
    preds = np.full(frame_rows, 0.5)
    m = Monitor("bench-frame", "prod", client=client)
    perf = time.perf_counter
    cpu0 = time.process_time()
    t0 = perf()
    for _ in range(0, count, frame_rows):
        m.log_frame(live, predictions=preds)
    calls_s = perf() - t0
    m.close()
    total_s = perf() - t0
    st = m.stats()
    return {"predictions": st["sent"], "frame_rows": frame_rows, "in_log_frame_s": calls_s, "until_acknowledged_s": total_s,
            "published_per_s": st["sent"] / total_s, "dropped": st["dropped"],
            "process_cpu_us_per_prediction": (time.process_time() - cpu0) / max(st["sent"], 1) * 1e6}


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc), start-up included."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def drift_throughput(client, settings, predictions: int) -> dict:
    from confluent_kafka import Consumer, TopicPartition

    from modelog import Monitor, configure_monitor, log_reference
    from modelog.local.processes import start_drift_background, stop_drift

    log_reference("bench-drift", None, frame(20_000, 2), client=client)
    configure_monitor("bench-drift", window_rows=1000, client=client)
    m = Monitor("bench-drift", "prod", client=client, batch_rows=1000, max_buffer=predictions + 1)
    live = frame(predictions, 3, shift=0.3)
    t = time.perf_counter()
    m.log_frame(live, predictions=np.full(predictions, 0.5))
    m.close()
    fill_s = time.perf_counter() - t
    # the clock's reader starts after the predictions (at each partition's end offset now): it reads only what
    # the drift processor publishes. Reading the 200 prefilled batches too made the reader, not the processor,
    # the pace (it saw the last window ~17 s after the processor had published it; 2026-12-01)
    consumer = Consumer(settings.librdkafka(**{"group.id": f"bench-{os.getpid()}", "enable.auto.commit": False}))
    topic = settings.monitoring_topic
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                     for p in partitions])
    start = time.time()
    start_drift_background(settings)
    info = json.loads((settings.home / "drift.json").read_text())
    ready_at = info.get("ready_at", start)
    want = predictions // 1000
    seen, last, last_stamp = set(), None, None
    deadline = time.time() + 900
    try:
        while len(seen) < want and time.time() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            headers = dict(msg.headers() or [])
            if headers.get("modelog.event_type") == b"DriftMeasured":
                seen.add(headers.get("modelog.event_id"))
                last = time.time()
                last_stamp = msg.timestamp()[1] / 1000
    finally:
        consumer.close()
        drift_cpu_s = _cpu_seconds(int(info["pid"]))
        stop_drift(settings)
    elapsed = (last or time.time()) - ready_at
    return {"predictions": predictions, "drift_process_cpu_s": drift_cpu_s,
            "drift_cpu_us_per_prediction": None if drift_cpu_s is None else drift_cpu_s / predictions * 1e6,
            "windows": len(seen), "windows_expected": want, "prefill_s": fill_s,
            "seconds_after_ready": elapsed, "predictions_per_s": predictions / elapsed if elapsed > 0 else None,
            # the last window's record as the processor's producer stamped it (CreateTime): when it was sent
            "seconds_after_ready_to_last_send": None if last_stamp is None else last_stamp - ready_at}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--predictions", type=int, default=200_000)
    ap.add_argument("--rate", type=float, default=100_000, help="paced publishing: predictions per second")
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="paced publishing: how long (longer than the buffer of 100,000 takes to fill)")
    ap.add_argument("--frame-predictions", type=int, default=1_000_000, help="Monitor.log_frame: predictions in all")
    ap.add_argument("--storage", choices=["memory", "s3"], default="s3")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "monitoring.json")
    args = ap.parse_args()

    from modelog import Client, Settings
    from modelog.local.broker import EmbeddedBroker

    load_start = [round(x, 2) for x in os.getloadavg()]
    home = Path(tempfile.mkdtemp(prefix="modelog-bench-mon-"))
    broker = EmbeddedBroker(home, storage=args.storage)
    settings = Settings.load(env={}, home=home, bootstrap=broker.start(), session_timeout_ms=2000)
    try:
        client = Client(settings)
        client.create_experiment("warmup")
        client.flush()
        serving = serving_cost(client, args.calls)
        flat_out = publish_rate(client, args.calls, None)
        paced = publish_rate(client, int(args.rate * args.seconds), args.rate)
        frames = frame_rate(client, args.frame_predictions)
        drift = drift_throughput(client, settings, args.predictions)
        client.close()
    finally:
        broker.stop()
    result = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
              "load_avg_at_start": load_start, "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
              "storage": args.storage, "features": {"numeric": NUM, "categorical": CAT}, "serving": serving,
              "publish_flat_out": flat_out, "publish_paced": paced, "publish_frames": frames,
              "drift_processor": drift}
    print(f"\nmodelog monitoring benchmark — {NUM} numeric + {CAT} categorical features; embedded broker "
          f"({args.storage}); {os.cpu_count()} CPUs, Python {platform.python_version()}; load average "
          f"{load_start[0]} at start, {result['load_avg_at_end'][0]} at end")
    rows = [
        ("Monitor.log per call, mean (serving thread)", f"{serving['mean_us_per_call']:.2f} us"),
        ("Monitor.log per call, p99", f"{serving['p99_us_per_call']:.2f} us"),
        ("  calls / dropped (buffer full)", f"{serving['calls']:,} / {serving['dropped']:,}"),
        ("Monitor.log flat out: predictions/s published (until acknowledged)",
         f"{flat_out['published_per_s']:,.0f}"),
        ("  offered / sent / dropped / unsent at close", f"{flat_out['offered_per_s']:,.0f}/s / {flat_out['sent']:,} / "
                                      f"{flat_out['dropped']:,} / {flat_out['unsent_at_close']:,}"),
        ("  CPU of this process per prediction published", f"{flat_out['process_cpu_us_per_prediction']:.1f} us"),
        (f"Monitor.log paced at {args.rate:,.0f}/s for {args.seconds:g} s: published/s",
         f"{paced['published_per_s']:,.0f}"),
        ("  offered / sent / dropped / unsent at close", f"{paced['offered_per_s']:,.0f}/s / {paced['sent']:,} / "
                                                        f"{paced['dropped']:,} / {paced['unsent_at_close']:,}"),
        (f"Monitor.log_frame, frames of {frames['frame_rows']:,}: predictions/s published",
         f"{frames['published_per_s']:,.0f}"),
        ("  predictions / dropped / CPU of this process per prediction",
         f"{frames['predictions']:,} / {frames['dropped']:,} / {frames['process_cpu_us_per_prediction']:.2f} us"),
        ("drift processor: predictions/s (windows of 1,000)",
         f"{drift['predictions_per_s']:,.0f}" if drift["predictions_per_s"] else "n/a"),
        ("  windows measured / expected", f"{drift['windows']} / {drift['windows_expected']}"),
        ("  drift process CPU per prediction (start-up included)",
         f"{drift['drift_cpu_us_per_prediction']:.1f} us" if drift["drift_cpu_us_per_prediction"] else "n/a"),
        ("  seconds from ready to the last window", f"{drift['seconds_after_ready']:.1f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>16}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
