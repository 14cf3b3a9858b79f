"""A training job for bench/faults_kill.py: logs runs until told to stop, and records what the broker acknowledged.

    python bench/faults_writer.py --acks FILE --stop-file FILE [--name w0] [--keys 3] [--steps-per-run 500]
                                  [--pace-ms 5] [--flush-every 50]

Its modelog settings come from the MODELOG_* environment. Each line of ``--acks`` is JSON:

* ``{"run": ID, "upto": STEP}``: every point of steps 0..STEP of run ID (all ``--keys`` keys) was acknowledged:
  ``run.flush()`` (every ``--flush-every`` steps; 0: never) or ``run.end()`` returned without an error;
* ``{"run": ID, "error": TEXT}``: a flush or end raised ``DeliveryError`` (the job goes on with a new run);
* last, ``{"summary": {...}}``: runs, points logged, errors, and the longest single call of each kind
  (``log_metrics``, ``start_run``, ``flush``/``end``): how long the training loop was held up at worst.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--acks", type=Path, required=True)
    ap.add_argument("--stop-file", type=Path, required=True)
    ap.add_argument("--name", default="w0")
    ap.add_argument("--keys", type=int, default=3)
    ap.add_argument("--steps-per-run", type=int, default=500)
    ap.add_argument("--pace-ms", type=float, default=5.0)
    ap.add_argument("--flush-every", type=int, default=50)
    args = ap.parse_args()

    from modelog import Client, DeliveryError, Settings

    client = Client(Settings.load())
    keys = [f"k{j}" for j in range(args.keys)]
    longest = {"log_metrics": 0.0, "start_run": 0.0, "flush_or_end": 0.0}
    totals = {"runs": 0, "points_logged": 0, "errors": 0}
    acks = args.acks.open("a", buffering=1)

    def timed(kind: str, fn, *a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            longest[kind] = max(longest[kind], time.perf_counter() - t0)

    def note(**line) -> None:
        acks.write(json.dumps(line) + "\n")

    period = args.pace_ms / 1000
    t0, tick = time.perf_counter(), 0
    while not args.stop_file.exists():
        run = timed("start_run", client.start_run, experiment="faults", name=f"{args.name}-{totals['runs']}",
                    environment=False)
        totals["runs"] += 1
        try:
            for step in range(args.steps_per_run):
                tick += 1
                delay = t0 + tick * period - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                timed("log_metrics", run.log_metrics, {k: step + j / 10 for j, k in enumerate(keys)}, step=step)
                totals["points_logged"] += len(keys)
                if args.flush_every and step % args.flush_every == args.flush_every - 1:
                    timed("flush_or_end", run.flush)
                    note(run=run.id, upto=step)
                if step % 20 == 0 and args.stop_file.exists():
                    break
            timed("flush_or_end", run.end)
            note(run=run.id, upto=step)
        except DeliveryError as exc:
            totals["errors"] += 1
            note(run=run.id, error=str(exc)[:300])
            try:
                run.end("FAILED", timeout=1)
            except DeliveryError:
                pass
    try:
        client.close()
    except DeliveryError as exc:  # the last FAILED run's end: already counted
        note(error_at_close=str(exc)[:300])
    note(summary={**totals, **{f"longest_{k}_s": round(v, 3) for k, v in longest.items()}, "pid": os.getpid()})


if __name__ == "__main__":
    main()
