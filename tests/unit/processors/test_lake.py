"""Shards and the lake on real DuckDB files and real Delta tables: several writers, one set of views.

A partitioned in-memory log feeds two ``ShardSet``s (two workers); the views read through
``LakeReader`` must equal one ``ViewStore`` fed the whole log, however partitions move between
workers, records are redelivered or tables are compacted. The Delta tables are read back with
``deltalake``'s own reader too.
"""

from __future__ import annotations

import subprocess
import sys
import zlib

import pytest

from modelog import Client, MemoryEmitter, Settings
from modelog.wire.codec import Codec
from modelog.processors import lake as lake_mod
from modelog.processors.lake import Lake, LakeReader
from modelog.wire.errors import ConfigError
from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.shards import ShardLost, ShardSet, ShardStore
from modelog.processors.store import VIEW_NAMES, ViewStore

PARTITIONS = 4


# -- pure rules ---------------------------------------------------------------------------------

def test_lake_locations_are_paths_or_s3_uris(tmp_path):
    assert lake_mod.normalize("s3://bucket/a/b/") == "s3://bucket/a/b"
    assert lake_mod.normalize(f"file://{tmp_path}/x") == str(tmp_path / "x")
    for bad in ("s3:///prefix", "gs://bucket/x"):
        with pytest.raises(ConfigError, match="MODELOG_LAKE"):
            lake_mod.normalize(bad)
    opts = lake_mod.storage_options("s3://b/p", {"endpoint": "http://127.0.0.1:9", "access_key_id": "k"})
    assert opts["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9" and opts["AWS_ALLOW_HTTP"] == "true"
    assert opts["AWS_ACCESS_KEY_ID"] == "k" and lake_mod.storage_options(str(tmp_path)) == {}


def test_latest_positions_keep_the_highest_offset_per_partition():
    import pyarrow as pa

    t = pa.table({"shard": ["a", "a", "b", "a"], "topic": ["t", "t", "t", "t"], "partition": [0, 0, 1, 0],
                  "next_offset": [5, 9, 3, 9], "published_at": [None] * 4}, schema=lake_mod.POSITIONS_SCHEMA)
    got = lake_mod._latest_positions(t)
    assert sorted(zip(got["partition"].to_pylist(), got["next_offset"].to_pylist())) == [(0, 9), (1, 3)]


# -- a partitioned log --------------------------------------------------------------------------

class Log:
    """Clients publish into memory; each event goes to partition crc32(key) % 4, as keyed Kafka would."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.codec = Codec()
        self.parts: list[list[bytes]] = [[] for _ in range(PARTITIONS)]
        self.clients: list[tuple[Client, list]] = []

    def client(self, principal: str) -> Client:
        c = Client(Settings.load(env={}, home=self.tmp_path, principal=principal), emitter=MemoryEmitter())
        self.clients.append((c, [0]))
        return c

    def collect(self) -> None:
        for c, seen in self.clients:
            for e, enc in zip(c.emitter.events[seen[0]:], c.emitter.encoded[seen[0]:]):
                self.parts[zlib.crc32(e.key.encode()) % PARTITIONS].append(enc)
            seen[0] = len(c.emitter.events)

    def publish(self, records: list[dict]) -> None:  # decisions go back on the log, as the live processor does
        for r in records:
            key = r["envelope"]["entity"]["key"]
            self.parts[zlib.crc32(key.encode()) % PARTITIONS].append(self.codec.encode("RequestDecided", r))

    def records(self, partition: int, start: int = 0, end: int | None = None) -> list[RawRecord]:
        values = self.parts[partition][start:end]
        return [RawRecord("t", partition, start + i, None, b"k", v) for i, v in enumerate(values)]


def feed(log: Log, owners: dict[int, ShardSet], done: dict[int, int], batch: int = 7) -> None:
    """Apply every record not yet applied, partition by partition, in batches, to its owner."""
    progress = True
    while progress:
        progress = False
        for p, owner in owners.items():
            recs = log.records(p, done[p], done[p] + batch)
            if recs:
                owner.apply(recs, Projector(), log.publish)
                done[p] += len(recs)
                progress = True


def rows(cur, view: str) -> list[str]:
    return sorted(map(repr, cur.execute(f"SELECT * FROM {view}").fetchall()))


def single_file(log: Log, tmp_path) -> ViewStore:
    """The same log, every partition in one views file (decisions are on the log now: nothing published)."""
    store = ViewStore(tmp_path / "single.duckdb")
    for p in range(PARTITIONS):
        store.apply(log.records(p), Projector())
    return store


def workload(log: Log) -> tuple[Client, Client]:
    alice, bob = log.client("alice"), log.client("bob")
    for i in range(6):
        with alice.start_run(experiment="e", name=f"r{i}") as run:
            run.log_params({"lr": 0.1 * i})
            for step in range(20):
                run.log_metric("loss", 1.0 / (step + 1), step=step)
            run.log_metric("auc", 0.5 + i / 20)
        if i == 5:
            alice.registry.register_model("credit-risk", run_id=run.id, wait=False)
    return alice, bob


@pytest.fixture
def lake(tmp_path):
    return Lake(tmp_path / "lake")


def test_two_workers_publish_one_set_of_views_equal_to_a_single_file(lake, tmp_path, monkeypatch):
    monkeypatch.setattr("modelog.processors.shards.COMPACT_EVERY", 1)  # compacted after every commit
    monkeypatch.setattr("modelog.processors.shards.PUBLISH_INTERVAL", 0.0)  # publish after every batch: many files
    log = Log(tmp_path)
    workload(log)
    log.collect()
    a, b = ShardSet(lake), ShardSet(lake)
    owners = {0: a, 1: a, 2: b, 3: b}
    done = dict.fromkeys(range(PARTITIONS), 0)
    feed(log, owners, done)
    a.tick(), b.tick()
    reader = LakeReader(lake.uri)
    single = single_file(log, tmp_path)
    cur = reader.reader()
    assert cur.execute("SELECT count(*) FROM metrics").fetchone() == (6 * 21,)
    for view in VIEW_NAMES:
        assert rows(cur, view) == rows(single.reader(), view), view
    assert lake.positions() == {("t", p): len(log.parts[p]) for p in range(PARTITIONS) if log.parts[p]}
    # the format's own reader: every point once, each tagged with the shard that wrote it
    from deltalake import DeltaTable

    points = DeltaTable(lake.table_uri("log_metrics")).to_pyarrow_table()
    assert points.num_rows == single.reader().execute("SELECT count(*) FROM log_metrics").fetchone()[0]
    assert set(points["lake_shard"].to_pylist()) <= {f"t.{p}" for p in range(PARTITIONS)}
    history = DeltaTable(lake.table_uri("log_events")).history()  # every publication appends events
    assert any(h.get("operation") == "OPTIMIZE" for h in history), [h.get("operation") for h in history]  # compacted while written
    a.close(), b.close(), single.close()


def test_a_partition_moves_to_another_worker_without_loss_or_doubles(lake, tmp_path):
    log = Log(tmp_path)
    workload(log)
    log.collect()
    a, b = ShardSet(lake), ShardSet(lake)
    busiest = max(range(PARTITIONS), key=lambda p: len(log.parts[p]))
    half = len(log.parts[busiest]) // 2
    a.apply(log.records(busiest, 0, half), Projector(), log.publish)
    other = subprocess.run([sys.executable, "-c", "import sys; from modelog.processors.lake import Lake; "
                            "from modelog.processors.shards import ShardStore; "
                            f"ShardStore(Lake(sys.argv[1]), 't', {busiest})", lake.uri],
                           capture_output=True, text=True)
    assert other.returncode != 0 and "another processor" in other.stderr  # the owner's lock keeps other workers out
    a.release([("t", busiest)])
    # the new owner is redelivered from an older committed offset: nothing is applied twice
    stats, _ = b.apply(log.records(busiest, 0), Projector(), log.publish)
    assert (stats.duplicates, stats.applied) == (half, len(log.parts[busiest]) - half)
    for p in range(PARTITIONS):
        if p != busiest:
            b.apply(log.records(p), Projector(), log.publish)
    b.close()
    reader = LakeReader(lake.uri)
    single = single_file(log, tmp_path)
    for view in VIEW_NAMES:
        assert rows(reader.reader(), view) == rows(single.reader(), view), view
    single.close()


def test_the_decider_sees_other_partitions_through_the_lake(lake, tmp_path):
    """A metric gate on a model whose run lives in another partition: decided on the published metrics."""
    log = Log(tmp_path)
    alice = log.client("alice")
    model_part = zlib.crc32(b"credit-risk") % PARTITIONS
    while True:  # a run whose events land in another partition than the model's
        with alice.start_run(experiment="e") as run:
            run.log_metric("auc", 0.75)
        if zlib.crc32(run.id.encode()) % PARTITIONS != model_part:
            break
    alice.registry.register_model("credit-risk", run_id=run.id, wait=False)
    alice.registry.set_policy([{"name": "gate", "kind": "METRIC_GATE", "action": "PROMOTE", "stage": "production",
                                "metric": "auc", "op": ">=", "threshold": 0.7}], model="credit-risk")
    log.collect()
    a, b = ShardSet(lake), ShardSet(lake)
    owners = {0: a, 1: b, 2: a, 3: b}
    done = dict.fromkeys(range(PARTITIONS), 0)
    feed(log, owners, done)
    for s in (a, b):
        for shard in s.shards.values():
            shard.publish(now=shard.published_at + 1)
    req = alice.registry.promote("credit-risk", 1, "production", precheck=False)
    log.collect()
    feed(log, owners, done)
    a.close(), b.close()
    cur = LakeReader(lake.uri).reader()
    assert cur.execute("SELECT status FROM requests WHERE request_id = ?", [req.request_id]).fetchone() == (
        "APPROVED",)
    assert cur.execute("SELECT evidence['gate.auc'] FROM decisions WHERE request_id = ?",
                       [req.request_id]).fetchone() == ("0.75",)
    assert cur.execute("SELECT stage FROM model_versions WHERE model = 'credit-risk' AND version = 1").fetchone() == (
        "production",)


def test_a_lost_shard_is_refused_with_the_way_out(lake, tmp_path):
    log = Log(tmp_path)
    workload(log)
    log.collect()
    s = ShardSet(lake)
    s.apply(log.records(0) or log.records(1), Projector())
    s.close()
    lost = next(lake.root.glob("shards/*.duckdb"))
    lost.unlink()
    topic, part = lost.stem.rsplit(".", 1)
    with pytest.raises(ShardLost, match="delete"):
        ShardStore(lake, topic, int(part))


def test_a_shard_file_behind_the_lake_is_refused(lake, tmp_path):
    """A file left on a machine whose worker lost the partition, while another published more of it: using it
    would misnumber the rows still to publish, so it is refused like a lost one."""
    import shutil

    log = Log(tmp_path)
    workload(log)
    log.collect()
    busiest = max(range(PARTITIONS), key=lambda p: len(log.parts[p]))
    half = len(log.parts[busiest]) // 2
    s = ShardSet(lake)
    s.apply(log.records(busiest, 0, half), Projector())
    s.close()
    path = lake.shard_path(f"t.{busiest}")
    shutil.copy(path, tmp_path / "old.duckdb")  # what the first machine kept
    s = ShardSet(lake)
    s.apply(log.records(busiest, half), Projector())
    s.close()
    shutil.copy(tmp_path / "old.duckdb", path)
    with pytest.raises(ShardLost, match="behind the lake"):
        ShardStore(lake, "t", busiest)
