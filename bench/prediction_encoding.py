"""How a PredictionsLogged batch costs on each side of the wire: lists (the first form) or buffers (decision 0025).

One batch of --rows predictions of 20 numeric + 5 categorical features and a numeric prediction (the
features of bench/monitoring.py). For each form, CPU time per prediction (``time.process_time``, the least
of --repeat runs: other work on the cores inflates it less than wall time) to build the batch's columns
from what ``Monitor.log`` buffered (the SDK's publisher thread), to Avro-encode it, to decode it, to check
its rules and to project it into Arrow rows (the projector); the bytes per prediction; and one drift
window of --rows predictions measured against a 20,000-row reference (the drift processor's statistics).
Prints a table and writes ``bench/results/prediction_encoding.json``.

    python bench/prediction_encoding.py [--rows 1000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "prediction_encoding.json")
    args = ap.parse_args()

    from monitoring import frame

    from modelog import Settings
    from modelog.drift.profile import profile_frame
    from modelog.processors.drift_app import DriftState
    from modelog.processors.monitoring import _predictions
    from modelog.processors.rows import new_rows
    from modelog.processors.tables import to_arrow
    from modelog.sdk.monitoring import predictions_payload
    from modelog.wire import rulecheck
    from modelog.wire.codec import Codec
    from modelog.wire.envelope import EventFactory

    n = args.rows
    rows = frame(n, 1).to_dict(orient="records")
    items = [(f"r{i}", 1_760_000_000_000_000 + i, r, 0.5, None) for i, r in enumerate(rows)]
    codec, factory = Codec(), EventFactory(Settings.load(env={}))
    reference = profile_frame(frame(20_000, 2))
    result = {"rows": n, "load_avg_at_start": [round(x, 2) for x in os.getloadavg()], "forms": {}}
    for form, buffers in (("lists", False), ("buffers", True)):
        build = lambda: predictions_payload("m", "d", None, items, buffers=buffers)  # noqa: E731
        event = factory.make("PredictionsLogged", "monitor", "monitor:m", **build())
        data = codec.encode("PredictionsLogged", event.record)
        record = codec.decode(data).record

        def project():
            out = new_rows()
            _predictions(record, out)
            to_arrow("log_predictions", out["log_predictions"])

        def window():
            st = DriftState({}, {}, {}, {}, {}, {})
            st.add_reference({"model": "m", "version": None, "columns": reference})
            st.configs["m"] = {"window_rows": n}
            (closed,) = st.add_predictions(record, 0)
            st.measure(closed)

        window()  # warm: the reference's sorted samples are cached per column object in a real processor
        us = {"build": best(build, args.repeat), "encode": best(lambda: codec.encode("PredictionsLogged", event.record),
                                                               args.repeat),
              "decode": best(lambda: codec.decode(data), args.repeat),
              "rules": best(lambda: rulecheck.check("PredictionsLogged", record), args.repeat),
              "project": best(project, args.repeat)}
        result["forms"][form] = {**{f"{k}_us_per_prediction": v / n * 1e6 for k, v in us.items()},
                                 "bytes_per_prediction": len(data) / n,
                                 "drift_window_ms": best(window, max(3, args.repeat // 2)) * 1e3}
    result["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]

    print(f"\nPredictionsLogged, {n} predictions of 20 numeric + 5 categorical features; CPU time, least of "
          f"{args.repeat}; load average {result['load_avg_at_start'][0]} at start, {result['load_avg_at_end'][0]} at end")
    keys = ["build", "encode", "decode", "rules", "project"]
    print(f"{'form':<8} " + " ".join(f"{k + ' us':>11}" for k in keys) + f" {'bytes':>7} {'window ms':>10}")
    for form, r in result["forms"].items():
        print(f"{form:<8} " + " ".join(f"{r[k + '_us_per_prediction']:>11.2f}" for k in keys)
              + f" {r['bytes_per_prediction']:>7.0f} {r['drift_window_ms']:>10.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
