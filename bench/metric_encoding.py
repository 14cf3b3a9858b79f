"""How to carry a metric batch on the wire: one Avro record per point, Avro arrays, or little-endian buffers.

Decision 0021 chose between three encodings of one ``MetricsLogged`` batch (20 keys x 250 steps = 5,000 points):

* ``records``  -- the first form: an array of ``{key, value, step, timestamp}`` records;
* ``arrays``   -- parallel Avro arrays (``array<int>`` key indexes, ``array<double>``, ``array<long>`` x 2);
* ``buffers``  -- parallel Avro ``bytes``, each a little-endian numpy buffer (what modelog uses).

For each: CPU time per point to build and encode a batch from what ``log_metrics`` buffered (the SDK's
flusher thread), to decode it and make the Arrow columns the projector inserts, and the size of a batch
(raw and lz4-compressed, as the producer sends it). CPU time (``time.process_time``), the least of
``--repeat`` runs: other work on the cores inflates it less than wall time. Prints a table and writes
``bench/results/metric_encoding.json``.

    python bench/metric_encoding.py [--points 5000] [--keys 20] [--repeat 7]
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import sys
import time
from itertools import chain
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from backbone import machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=5000)
    ap.add_argument("--keys", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "metric_encoding.json")
    args = ap.parse_args()

    import cramjam
    import numpy as np
    import pyarrow as pa
    from fastavro import parse_schema, schemaless_reader, schemaless_writer

    from modelog.processors.projection import _metrics_logged
    from modelog.processors.rows import new_rows
    from modelog.processors.tables import to_arrow
    from modelog.sdk.tracking import metric_batches
    from modelog.wire.metric_columns import points as as_points
    from modelog.wire.schemas import _strip_logical_types, current_schemas

    expanded = current_schemas()["MetricsLogged"].expanded
    buffers_schema = parse_schema(_strip_logical_types(copy.deepcopy(expanded)))
    arrays = copy.deepcopy(expanded)
    cols = next(f for f in arrays["fields"] if f["name"] == "columns")
    cols["type"][1]["name"] = "MetricArrayColumns"
    for f in cols["type"][1]["fields"]:
        f["type"] = {"type": "array", "items": {"key_index": "int", "values": "double"}.get(f["name"], "long")} \
            if f["name"] != "keys" else f["type"]
    arrays_schema = parse_schema(_strip_logical_types(arrays))

    keys = tuple(f"metric_{j:02d}" for j in range(args.keys))
    steps = args.points // args.keys
    chunks = [(keys, [s * 0.001 + j for j in range(args.keys)], s, 1_760_000_000_000_000 + s * 1000) for s in range(steps)]
    n = steps * args.keys
    envelope = {"event_id": "0190f5e0-aaaa-7000-8000-000000000001", "event_type": "MetricsLogged", "occurred_at": 1,
                "actor": {"principal": "bench", "kind": "USER"},
                "source": {"host": "h", "pid": 1, "program": "bench", "sdk_version": "0"},
                "entity": {"type": "run", "key": "r"}}

    def build_records():  # the SDK's drain before columnar batches
        pts = []
        for names, values, st, ts in chunks:
            for k, v in zip(names, values):
                pts.append({"key": k, "value": v, "step": st, "timestamp": ts})
        return {"envelope": envelope, "run_id": "r", "points": pts, "columns": None}

    def build_arrays():
        ids = {k: i for i, k in enumerate(keys)}
        idx = [ids[k] for names, _, _, _ in chunks for k in names]
        return {"envelope": envelope, "run_id": "r", "points": [], "columns": {
            "keys": list(keys), "key_index": idx, "values": list(chain.from_iterable(c[1] for c in chunks)),
            "steps": [c[2] for c in chunks for _ in c[0]], "timestamps": [c[3] for c in chunks for _ in c[0]]}}

    def build_buffers():
        (columns,) = metric_batches(chunks, n)
        return {"envelope": envelope, "run_id": "r", "points": [], "columns": columns}

    def encode(schema, record):
        buf = io.BytesIO()
        schemaless_writer(buf, schema, record, strict_allow_default=True)
        return buf.getvalue()

    def project_records(data):
        r = schemaless_reader(io.BytesIO(data), buffers_schema, buffers_schema)
        out = new_rows()
        _metrics_logged(r, out)
        return to_arrow("log_metrics", out["log_metrics"])

    def project_arrays(data):
        r = schemaless_reader(io.BytesIO(data), arrays_schema, arrays_schema)
        c = r["columns"]
        table = pa.table({"event_id": pa.repeat(pa.scalar(r["envelope"]["event_id"]), len(c["values"])),
                          "run_id": pa.repeat(pa.scalar(r["run_id"]), len(c["values"])),
                          "key": pa.array(c["keys"]).take(pa.array(c["key_index"], pa.int32())),
                          "value": pa.array(c["values"], pa.float64()), "step": pa.array(c["steps"], pa.int64()),
                          "timestamp": pa.array(c["timestamps"], pa.int64()).view(pa.timestamp("us"))})
        return table

    project_buffers = project_records  # the same projection: it reads whichever form the record has

    def cpu(fn, *a) -> float:
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.process_time()
            fn(*a)
            best = min(best, time.process_time() - t0)
        return best

    forms = {"records": (build_records, buffers_schema, project_records),
             "arrays": (build_arrays, arrays_schema, project_arrays),
             "buffers": (build_buffers, buffers_schema, project_buffers)}
    results = {}
    reference = None
    for name, (build, schema, project) in forms.items():
        data = encode(schema, build())
        table = project(data)
        rows = table.to_pylist()
        if reference is None:
            reference = rows
        assert rows == reference, f"{name}: the projected rows differ"
        assert len(as_points(schemaless_reader(io.BytesIO(data), schema, schema)) if name != "arrays" else rows) == n
        results[name] = {
            "encode_us_per_point": cpu(lambda: encode(schema, build())) / n * 1e6,
            "decode_project_us_per_point": cpu(project, data) / n * 1e6,
            "bytes_per_point": len(data) / n,
            "lz4_bytes_per_point": len(bytes(cramjam.lz4.compress_block(data))) / n,
        }
    load = os.getloadavg()
    print(f"\none MetricsLogged batch of {n:,} points ({args.keys} keys); CPU time per point, least of {args.repeat}; "
          f"{machine()['cpus']} CPUs, load average {load[0]:.1f}")
    print(f"{'form':<9} {'build+encode us':>15} {'decode+Arrow us':>15} {'bytes':>6} {'lz4 bytes':>9}")
    for name, r in results.items():
        print(f"{name:<9} {r['encode_us_per_point']:>15.3f} {r['decode_project_us_per_point']:>15.3f} "
              f"{r['bytes_per_point']:>6.1f} {r['lz4_bytes_per_point']:>9.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "load_average": load, "points": n, "keys": args.keys,
                                    "repeat": args.repeat, "forms": results}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
