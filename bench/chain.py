"""What tamper evidence costs the processor (decision 0023): appending records to their partition's Merkle tree.

Times ``Chain.observe`` -- per record: the content digest (SHA-256 over timestamp, key, value, headers),
the leaf hash, the compact tree's append, and a checkpoint (root + hints) every ``--every`` records --
on batches of 500 records (the projector's batch) of a realistic shape: a signed record with the
SDK's headers, values of 300 B (a run/param event), 5 KB and 100 KB (a MetricsLogged of 5,000 points).
Also the same batch's signature verification (what the processor already does per record) for scale.
In-process, no broker: the figure is the CPU added per record on the batch path; there is no extra
round trip per record (a checkpoint is one produce every ``--every`` records of a partition).

    python bench/chain.py [--batches 40] [--every 1000]   # prints a table, writes bench/results/chain.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from modelog.processors.chain import Chain
from modelog.processors.rows import RawRecord
from modelog.wire.signing import Signer, verify

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from backbone import machine  # noqa: E402

BATCH = 500


def records(size: int, n: int, start: int, signer: Signer) -> list[RawRecord]:
    value = os.urandom(size)
    out = []
    for i in range(n):
        eid = f"01890f5e-0000-7000-8000-{start + i:012d}"
        headers = (("modelog.event_type", b"MetricsLogged"), ("modelog.event_id", eid.encode()),
                   *((k, v) for k, v in signer.headers("modelog.tracking", eid, value)))
        out.append(RawRecord("modelog.tracking", i % 4, start + i, 1_760_000_000_000 + i, b"run:abc", value,
                             tuple(headers)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--every", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "chain.json")
    args = ap.parse_args()
    signer = Signer.generate()
    rows = []
    for size in (300, 5_000, 100_000):
        chain = Chain(every=args.every, seconds=0)
        per_record, verify_per_record, checkpoints = [], [], 0
        for b in range(args.batches):
            batch = records(size, BATCH, b * BATCH, signer)
            t = time.perf_counter()
            changed, due = chain.observe(batch, 0.0, chain.partitions)
            chain.commit(changed)
            per_record.append((time.perf_counter() - t) / BATCH)
            checkpoints += len(due)
            if b < 5:
                t = time.perf_counter()
                for r in batch:
                    h = dict(r.headers)
                    verify(signer.public_key, r.topic, h["modelog.event_id"].decode(), r.value, h["modelog.sig"])
                verify_per_record.append((time.perf_counter() - t) / BATCH)
        us = statistics.median(per_record) * 1e6
        rows.append({"value_bytes": size, "chain_us_per_record": round(us, 2),
                     "chain_records_per_s": round(1e6 / us), "checkpoints": checkpoints,
                     "signature_verify_us_per_record": round(statistics.median(verify_per_record) * 1e6, 2),
                     "chain_us_per_point_if_5000_points": round(us / 5000, 4) if size == 100_000 else None})
    print(f"{'value':>8} | {'chain µs/record':>15} | {'records/s':>10} | {'verify µs/record':>16} | checkpoints")
    for r in rows:
        print(f"{r['value_bytes']:>8} | {r['chain_us_per_record']:>15} | {r['chain_records_per_s']:>10} | "
              f"{r['signature_verify_us_per_record']:>16} | {r['checkpoints']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "batch": BATCH, "every": args.every, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
