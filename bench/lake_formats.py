"""Delta Lake (deltalake) or Apache Iceberg (pyiceberg) for the lake: measured on this machine (decision 0024).

Both over the embedded S3 server (``modelog.local.s3server``, on-disk, conditional PUTs), with a batch
shaped like a shard's publication (metric rows: run_id, key, step, value, timestamp):

* ``append_ms``: one append of ``--rows`` rows to an existing table (median of ``--appends``);
* ``read_ms``: open the table at its latest version and read it all to Arrow, as a view refresh does
  (median of 20, after the appends);
* ``same_table`` / ``different_tables``: ``--writers`` processes, each appending ``--commits`` batches at
  once to one table (or to a table each); commits that landed, conflicts retried, rows read back, wall s;
* ``install_mb``: the size of the library and the dependencies it adds to ours (site-packages).

Iceberg needs a catalog to commit: pyiceberg's SQL catalog over SQLite, a file on a disk every writer must
share (there is no catalog on object storage alone), so its concurrency figures are *with* a shared disk.

    python bench/lake_formats.py [--rows 1000] [--appends 30] [--writers 4] [--commits 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CREDS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_REGION": "us-east-1"}


def batch(rows: int, seed: int = 0):
    import pyarrow as pa

    return pa.table({
        "run_id": pa.array([f"run-{seed}-{i % 10}" for i in range(rows)]),
        "key": pa.array([f"metric_{i % 20:02d}" for i in range(rows)]),
        "step": pa.array(list(range(rows)), pa.int64()),
        "value": pa.array([i * 0.5 for i in range(rows)], pa.float64()),
        "timestamp": pa.array([1_700_000_000_000_000 + i for i in range(rows)], pa.timestamp("us", tz="UTC")),
    })


def start_s3(root: Path) -> tuple[subprocess.Popen, str]:
    port_file = root / "port"
    for bucket in ("delta", "iceberg"):
        (root / "data" / bucket).mkdir(parents=True)
    # the file itself: it needs only localbucket, so this also runs in a venv holding just the two libraries
    proc = subprocess.Popen([sys.executable, str(HERE.parent / "local" / "s3server.py"), str(root / "data"), "--port", "0",
                             "--port-file", str(port_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("the S3 server did not start")
        time.sleep(0.05)
    endpoint = f"http://127.0.0.1:{port_file.read_text().strip()}"
    return proc, endpoint


# -- Delta -----------------------------------------------------------------------------------------
def delta_options(endpoint: str) -> dict[str, str]:
    return {**CREDS, "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true"}


def delta_append(uri: str, endpoint: str, data) -> None:
    from deltalake import write_deltalake

    write_deltalake(uri, data, mode="append", storage_options=delta_options(endpoint))


def delta_read(uri: str, endpoint: str):
    from deltalake import DeltaTable

    return DeltaTable(uri, storage_options=delta_options(endpoint)).to_pyarrow_table()


def delta_writer(args) -> dict:
    uri, endpoint, commits, rows, seed = args
    done = conflicts = 0
    for i in range(commits):
        while True:
            try:
                delta_append(uri, endpoint, batch(rows, seed * 1000 + i))
                done += 1
                break
            except Exception as exc:  # noqa: BLE001 -- counted: a conflict the library did not resolve itself
                conflicts += 1
                if conflicts > 50:
                    raise RuntimeError(f"delta writer {seed}: {exc}") from exc
    return {"commits": done, "conflicts": conflicts}


# -- Iceberg ---------------------------------------------------------------------------------------
def iceberg_catalog(endpoint: str, catalog_db: str):
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog("bench", uri=f"sqlite:///{catalog_db}", warehouse="s3://iceberg/wh", **{
        "s3.endpoint": endpoint, "s3.access-key-id": "local", "s3.secret-access-key": "local",
        "s3.region": "us-east-1"})


def iceberg_append(name: str, endpoint: str, catalog_db: str, data) -> None:
    iceberg_catalog(endpoint, catalog_db).load_table(name).append(data)


def iceberg_read(name: str, endpoint: str, catalog_db: str):
    return iceberg_catalog(endpoint, catalog_db).load_table(name).scan().to_arrow()


def iceberg_create(name: str, endpoint: str, catalog_db: str) -> None:
    cat = iceberg_catalog(endpoint, catalog_db)
    try:
        cat.create_namespace("bench")
    except Exception:  # noqa: BLE001 -- exists
        pass
    cat.create_table(name, schema=batch(1).schema)


def iceberg_writer(args) -> dict:
    name, endpoint, catalog_db, commits, rows, seed = args
    done = conflicts = 0
    for i in range(commits):
        while True:
            try:
                iceberg_append(name, endpoint, catalog_db, batch(rows, seed * 1000 + i))
                done += 1
                break
            except Exception as exc:  # noqa: BLE001 -- CommitFailedException: reload and retry
                conflicts += 1
                if conflicts > 50:
                    raise RuntimeError(f"iceberg writer {seed}: {exc}") from exc
    return {"commits": done, "conflicts": conflicts}


# -- the measurements -----------------------------------------------------------------------------
def median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 2)


def concurrent(pool_args, worker, read) -> dict:
    t = time.perf_counter()
    with mp.get_context("spawn").Pool(len(pool_args)) as pool:
        results = pool.map(worker, pool_args)
    wall = time.perf_counter() - t
    return {"commits": sum(r["commits"] for r in results), "conflicts_retried": sum(r["conflicts"] for r in results),
            "rows_read_back": read(), "wall_s": round(wall, 2)}


def site_size_mb(dists: list[str]) -> float:
    from importlib.metadata import distribution

    total = 0
    for name in dists:
        try:
            d = distribution(name)
        except Exception:  # noqa: BLE001 -- not installed
            continue
        for f in d.files or []:
            p = Path(d.locate_file(f))
            if p.is_file():
                total += p.stat().st_size
    return round(total / 2**20, 1)


def measure_delta(endpoint: str, a) -> dict:
    uri = "s3://delta/t"
    delta_append(uri, endpoint, batch(a.rows))
    out = {"append_ms": median_ms(lambda: delta_append(uri, endpoint, batch(a.rows)), a.appends),
           "read_ms": median_ms(lambda: delta_read(uri, endpoint), 20)}
    same = [("s3://delta/same", endpoint, a.commits, a.rows, s) for s in range(a.writers)]
    delta_append("s3://delta/same", endpoint, batch(1))
    out["same_table"] = concurrent(same, delta_writer, lambda: delta_read("s3://delta/same", endpoint).num_rows - 1)
    diff = [(f"s3://delta/t{s}", endpoint, a.commits, a.rows, s) for s in range(a.writers)]
    out["different_tables"] = concurrent(
        diff, delta_writer, lambda: sum(delta_read(f"s3://delta/t{s}", endpoint).num_rows for s in range(a.writers)))
    out["install_mb"] = site_size_mb(["deltalake", "arro3-core"])
    return out


def measure_iceberg(endpoint: str, root: Path, a) -> dict:
    db = str(root / "catalog.db")
    iceberg_create("bench.t", endpoint, db)
    iceberg_append("bench.t", endpoint, db, batch(a.rows))
    out = {"append_ms": median_ms(lambda: iceberg_append("bench.t", endpoint, db, batch(a.rows)), a.appends),
           "read_ms": median_ms(lambda: iceberg_read("bench.t", endpoint, db), 20)}
    iceberg_create("bench.same", endpoint, db)
    same = [("bench.same", endpoint, db, a.commits, a.rows, s) for s in range(a.writers)]
    out["same_table"] = concurrent(same, iceberg_writer, lambda: iceberg_read("bench.same", endpoint, db).num_rows)
    for s in range(a.writers):
        iceberg_create(f"bench.t{s}", endpoint, db)
    diff = [(f"bench.t{s}", endpoint, db, a.commits, a.rows, s) for s in range(a.writers)]
    out["different_tables"] = concurrent(
        diff, iceberg_writer, lambda: sum(iceberg_read(f"bench.t{s}", endpoint, db).num_rows for s in range(a.writers)))
    out["install_mb"] = site_size_mb(["pyiceberg", "pyiceberg-core", "sqlalchemy", "fsspec", "mmh3", "pyroaring",
                                      "strictyaml", "tenacity", "cachetools", "sortedcontainers", "greenlet",
                                      "zstandard", "pyparsing", "rich", "markdown-it-py", "mdurl", "pygments"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--appends", type=int, default=30)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--commits", type=int, default=10)
    ap.add_argument("--formats", default="delta,iceberg")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    from backbone import machine

    results: dict = {"machine": machine(), "rows": a.rows, "writers": a.writers, "commits_per_writer": a.commits}
    with tempfile.TemporaryDirectory(prefix="lakefmt-") as tmp:
        root = Path(tmp)
        proc, endpoint = start_s3(root)
        try:
            if "delta" in a.formats:
                import deltalake

                results["delta"] = {"version": deltalake.__version__, **measure_delta(endpoint, a)}
            if "iceberg" in a.formats:
                import pyiceberg

                results["iceberg"] = {"version": pyiceberg.__version__, **measure_iceberg(endpoint, root, a)}
        finally:
            proc.terminate()
            proc.wait()
    expected = a.writers * a.commits * a.rows
    print(f"{'':22}" + "".join(f"{f:>26}" for f in ("delta", "iceberg") if f in results))
    for label, get in (("append ms (median)", lambda r: r["append_ms"]), ("read to Arrow ms", lambda r: r["read_ms"]),
                       *[(f"{k} commits/conflicts", lambda r, k=k: f"{r[k]['commits']}/{r[k]['conflicts_retried']}")
                         for k in ("same_table", "different_tables")],
                       *[(f"{k} rows/{expected}", lambda r, k=k: r[k]["rows_read_back"])
                         for k in ("same_table", "different_tables")],
                       *[(f"{k} wall s", lambda r, k=k: r[k]["wall_s"]) for k in ("same_table", "different_tables")],
                       ("install MB", lambda r: r["install_mb"])):
        print(f"{label:22}" + "".join(f"{get(results[f])!s:>26}" for f in ("delta", "iceberg") if f in results))
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
