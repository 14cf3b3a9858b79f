"""Shards and the lake on real DuckDB files and Parquet: several writers, one set of views.

A partitioned in-memory log feeds two ``ShardSet``s (two workers); the views read through
``LakeReader`` must equal one ``ViewStore`` fed the whole log, however partitions move between
workers, records are redelivered or files are merged.
"""

from __future__ import annotations

import subprocess
import sys
import zlib

import pytest

from modelog import Client, MemoryEmitter, Settings
from modelog.wire.codec import Codec
from modelog.processors import lake as lake_mod
from modelog.processors.lake import Lake, LakeReader, due_for_deletion, merged_name, plan_merge
from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.shards import ShardLost, ShardSet, ShardStore
from modelog.processors.store import VIEW_NAMES, ViewStore

PARTITIONS = 4


# -- pure rules ---------------------------------------------------------------------------------

def test_plan_merge_merges_the_unsealed_tail_only_past_the_limit():
    small = [(f"{i:03d}", 10) for i in range(5)]
    assert plan_merge(small, merge_after=5) == []
    assert plan_merge(small + [("005", 10)], merge_after=5) == [f"{i:03d}" for i in range(6)]
    sealed = [("big", 100)] + small + [("006", 10)]
    assert plan_merge(sealed, merge_after=5, seal_bytes=100) == [f"{i:03d}" for i in range(5)] + ["006"]
    assert plan_merge([("a", 10), ("big", 100), ("b", 10)], merge_after=1, seal_bytes=100) == []


def test_merged_name_spans_the_rows_of_its_inputs():
    assert merged_name(["000000000000-000000000010.parquet", "000000000010-000000000025.parquet"]) == \
        "000000000000-000000000025.parquet"


def test_retired_files_wait_out_the_grace_period():
    gone, kept = due_for_deletion([("a", 100.0), ("b", 125.0)], now=140.0, grace=30.0)
    assert gone == ["a"] and kept == [("b", 125.0)]


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
    monkeypatch.setattr(lake_mod, "MERGE_AFTER_FILES", 2)
    monkeypatch.setattr("modelog.processors.shards.PUBLISH_INTERVAL", 0.0)  # publish after every batch: many files
    log = Log(tmp_path)
    workload(log)
    log.collect()
    a, b = ShardSet(lake), ShardSet(lake)
    owners = {0: a, 1: a, 2: b, 3: b}
    done = dict.fromkeys(range(PARTITIONS), 0)
    feed(log, owners, done)
    a.tick(), b.tick()
    reader = LakeReader(lake.root)
    single = single_file(log, tmp_path)
    cur = reader.reader()
    assert cur.execute("SELECT count(*) FROM metrics").fetchone() == (6 * 21,)
    for view in VIEW_NAMES:
        assert rows(cur, view) == rows(single.reader(), view), view
    files = [len(m.files("log_metrics")) for m in lake.manifests() if m.files("log_metrics")]
    assert files and max(files) <= 3  # merged: never more than MERGE_AFTER_FILES + 1 per table and shard
    assert lake.positions() == {("t", p): len(log.parts[p]) for p in range(PARTITIONS) if log.parts[p]}
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
                            f"ShardStore(Lake(sys.argv[1]), 't', {busiest})", str(lake.root)],
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
    reader = LakeReader(lake.root)
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
    cur = LakeReader(lake.root).reader()
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
