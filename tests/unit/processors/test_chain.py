"""The processor's per-partition Merkle trees and checkpoints (processors/chain.py), and audit verify's logic
(processors/audit.py): an intact log verifies; a changed, removed, reordered or inserted record is named;
a falsified checkpoint is rejected (attacks 26 and 27, decision 0023)."""

from __future__ import annotations

import dataclasses

import pytest

from modelog.processors.audit import Auditor, Checkpoint
from modelog.processors.chain import (HINT, Chain, PartitionChain, content_digest, leaf_input, raw_headers,
                                      record_leaf)
from modelog.processors.merkle import CompactTree, leaf_hash, root_of
from modelog.processors.rows import RawRecord

T = "modelog.tracking"


def rec(offset: int, value: bytes | None = None, partition: int = 0, **kw) -> RawRecord:
    value = value if value is not None else b"event-%d" % offset
    return RawRecord(kw.get("topic", T), partition, offset, kw.get("ts", 1_700_000_000_000 + offset),
                     kw.get("key", b"run:%d" % (offset % 3)), value,
                     kw.get("headers", (("modelog.key_id", b"ed25519:ab"), ("modelog.sig", b"s" * 64))))


def checkpoints(records: list[RawRecord], every: int) -> list[Checkpoint]:
    chain = Chain(every=every, seconds=0)
    changed, due = chain.observe(records, 0.0, chain.partitions)
    chain.commit(changed)
    return [Checkpoint.from_record({"envelope": {"event_id": f"cp{i}"}, **c}, at=f"cp/0/{i}", logged_ms=i)
            for i, c in enumerate(due)]


def audit(records: list[RawRecord], cps: list[Checkpoint]):
    a = Auditor(cps)
    for r in records:
        a.add(r)
    return a.finish({(r.topic, r.partition) for r in records} or None)


def test_the_leaf_covers_every_byte_and_header_and_where_the_record_is():
    base = rec(7)
    leaf, content = record_leaf(base)
    assert leaf == leaf_hash(leaf_input(T, 0, 7, content))
    assert content == content_digest(base.timestamp_ms, base.key, base.value, base.headers)
    variants = [
        dataclasses.replace(base, value=b"event-8"), dataclasses.replace(base, key=b"run:2"),
        dataclasses.replace(base, key=None), dataclasses.replace(base, value=None),
        dataclasses.replace(base, timestamp_ms=base.timestamp_ms + 1), dataclasses.replace(base, timestamp_ms=None),
        dataclasses.replace(base, headers=base.headers[:1]),  # a signature header dropped
        dataclasses.replace(base, headers=base.headers[::-1]),  # reordered headers
        dataclasses.replace(base, headers=base.headers + base.headers[:1]),  # a repeated header
        dataclasses.replace(base, headers=(("modelog.key_id", b"ed25519:ab"), ("modelog.sig", b"s" * 63 + b"t"))),
        dataclasses.replace(base, offset=8), dataclasses.replace(base, partition=1),
        dataclasses.replace(base, topic="modelog.monitoring"),
        # length-prefixed fields: moving a byte from the key to the value is another record
        dataclasses.replace(base, key=b"run:", value=b"1event-7"),
    ]
    leaves = {record_leaf(v)[0] for v in variants}
    assert leaf not in leaves and len(leaves) == len(variants)
    assert raw_headers([("a", b"1"), ("a", b"2"), (b"b", None)]) == (("a", b"1"), ("a", b"2"), ("b", None))
    assert raw_headers(None) == () and raw_headers({"k": b"v"}) == (("k", b"v"),)


def test_checkpoints_every_n_records_per_partition_with_the_root_of_every_record_so_far():
    records = [rec(o // 2, partition=o % 2) for o in range(25)]  # two partitions, interleaved
    chain = Chain(every=5, seconds=0)
    changed, due = chain.observe(records, 0.0, chain.partitions)
    chain.commit(changed)
    by_p = {p: [r for r in records if r.partition == p] for p in (0, 1)}
    assert [(c["partition"], c["tree_size"]) for c in due] == [(0, 5), (1, 5), (0, 10), (1, 10)]
    for c in due:
        mine = by_p[c["partition"]][:c["tree_size"]]
        assert c["root_hash"] == root_of([record_leaf(r)[0] for r in mine])
        assert c["next_offset"] == mine[-1].offset + 1 and c["base_offset"] == 0
        assert c["offsets"] == [r.offset for r in mine[c["previous_size"]:]]
        assert c["hints"] == b"".join(record_leaf(r)[1][:HINT] for r in mine[c["previous_size"]:])
    assert chain.partitions[(T, 0)].size == 13 and chain.partitions[(T, 1)].size == 12


def test_redelivered_records_are_not_appended_twice_and_uncommitted_batches_leave_no_trace():
    chain = Chain(every=100, seconds=0)
    records = [rec(o) for o in range(10)]
    changed, _ = chain.observe(records[:6], 0.0, chain.partitions)
    chain.commit(changed)
    rolled_back, _ = chain.observe(records[6:], 0.0, chain.partitions)  # not committed: a rollback
    assert chain.partitions[(T, 0)].size == 6
    changed, _ = chain.observe(records[3:], 0.0, chain.partitions)  # at-least-once: 3..5 again
    chain.commit(changed)
    assert chain.partitions[(T, 0)].tree.root() == root_of([record_leaf(r)[0] for r in records])
    assert rolled_back[(T, 0)].size == 10  # the copy, not the committed tree


def test_time_bound_checkpoint_of_an_idle_partition_and_none_when_nothing_is_new():
    chain = Chain(every=1000, seconds=60)
    changed, due = chain.observe([rec(0), rec(1)], 100.0, chain.partitions)
    assert due == []
    chain.commit(changed)
    assert chain.tick(159.0) == ({}, [])
    changed, due = chain.tick(160.0)
    assert [c["tree_size"] for c in due] == [2]
    chain.commit(changed)
    assert chain.tick(1000.0) == ({}, [])  # nothing new since: no checkpoint


def test_a_tree_that_starts_mid_partition_says_where():
    chain = Chain(every=3, seconds=0)
    _, due = chain.observe([rec(o) for o in range(40, 46)], 0.0, {})
    assert [(c["base_offset"], c["tree_size"], c["next_offset"]) for c in due] == [(40, 3, 43), (40, 6, 46)]
    cps = [Checkpoint.from_record({"envelope": {"event_id": "x"}, **c}) for c in due]
    assert audit([rec(o) for o in range(50)], cps).ok  # the auditor starts that tree at offset 40 too


def test_partition_state_round_trips():
    pc = PartitionChain(T, 0)
    for o in range(11):
        pc.append(rec(o), 1.0)
    again = CompactTree.from_bytes(pc.size, pc.tree.to_bytes())
    assert again.root() == pc.tree.root()


# -- audit verify ------------------------------------------------------------------------------------------

LOG = [rec(o) for o in range(23)]


def test_an_intact_log_verifies_and_says_what_is_not_covered_yet():
    cps = checkpoints(LOG, 5)
    rep = audit(LOG, cps)
    assert rep.ok and rep.findings == []
    assert rep.checkpoints == rep.matched == 4 and rep.records == 23
    assert rep.last.tree_size == 20 and rep.uncovered == {(T, 0): 3}


def test_no_checkpoints_is_not_a_pass():
    assert not audit(LOG, []).ok


@pytest.mark.parametrize("mutate, kind, offset", [
    (lambda log: log[:7] + [dataclasses.replace(log[7], value=b"rewritten")] + log[8:], "changed", 7),
    (lambda log: log[:7] + [dataclasses.replace(log[7], headers=())] + log[8:], "changed", 7),  # signature stripped
    (lambda log: log[:12] + log[13:], "removed", 12),
    (lambda log: log[:16], "removed", 16),  # the tail truncated before the last checkpoint
    (lambda log: log[:9] + [dataclasses.replace(log[10], offset=9), dataclasses.replace(log[9], offset=10)] + log[11:],
     "reordered", 9),  # swapped inside a batch: offsets are positions, the contents moved
    (lambda log: log[:3] + [dataclasses.replace(log[3], timestamp_ms=1)] + log[4:], "changed", 3),  # backdated
])
def test_the_first_record_changed_removed_or_reordered_is_named(mutate, kind, offset):
    cps = checkpoints(LOG, 5)
    rep = audit(mutate(list(LOG)), cps)
    assert not rep.ok
    first = rep.findings[0]
    assert (first.kind, first.topic, first.partition, first.offset) == (kind, T, 0, offset), str(first)
    assert len(rep.findings) == 1  # later checkpoints of the partition are not held against a broken tree


def test_an_inserted_record_is_named():
    cps = checkpoints([r for r in LOG if r.offset != 4], 5)  # the processor saw a gap at offset 4
    rep = audit(LOG, cps)
    assert [(f.kind, f.offset) for f in rep.findings] == [("inserted", 4)]


def test_falsified_checkpoints_are_rejected():
    good = checkpoints(LOG, 5)
    forged_root = dataclasses.replace(good[1], root_hash=bytes(32))
    rep = audit(LOG, [good[0], forged_root] + good[2:])
    assert [f.kind for f in rep.findings] == ["root_mismatch"]
    # hints that describe another history: named as the record that differs
    lying = dataclasses.replace(good[0], hints=bytes(HINT) + good[0].hints[HINT:])
    assert [(f.kind, f.offset) for f in audit(LOG, [lying, *good[1:]]).findings] == [("malformed", None)]
    lying = dataclasses.replace(lying, root_hash=bytes(32))
    assert [(f.kind, f.offset) for f in audit(LOG, [lying]).findings] == [("changed", 0)]
    for bad in (dataclasses.replace(good[0], offsets=good[0].offsets[:-1]),
                dataclasses.replace(good[0], previous_size=9),
                dataclasses.replace(good[0], root_hash=b"short"),
                dataclasses.replace(good[0], offsets=good[0].offsets[::-1])):
        assert [f.kind for f in audit(LOG, [bad]).findings] == ["malformed"]
    # a checkpoint of a bigger tree than the log holds: records removed at the tail
    longer = checkpoints(LOG + [rec(23), rec(24)], 25)
    assert [(f.kind, f.offset) for f in audit(LOG, longer).findings] == [("removed", 23)]


def test_a_checkpoint_of_a_partition_that_is_gone():
    cps = checkpoints([rec(o, partition=3) for o in range(5)], 5)
    rep = audit(LOG, cps)
    assert [f.kind for f in rep.findings] == ["no_partition"]


def test_a_tail_truncated_with_its_checkpoints_passes_alone_and_is_caught_by_a_witness():
    from modelog.processors.audit import witnessed

    cps = checkpoints(LOG, 5)
    kept = audit(LOG, cps).witness()  # what an earlier run wrote to --witness
    assert list(kept) == [f"{T}/0/0"] and kept[f"{T}/0/0"]["tree_size"] == 20
    truncated, survivors = LOG[:12], [c for c in cps if c.next_offset <= 12]
    assert audit(truncated, survivors).ok  # the limit: nothing on the log says more was there
    rep = audit(truncated, survivors + witnessed(kept, "w.json"))
    assert [(f.kind, f.offset) for f in rep.findings] == [("removed", None)]
    assert "holds 12 records" in rep.findings[0].detail and "the checkpoint 20" in rep.findings[0].detail
    # an intact log matches the witness, and the next witness keeps the larger tree
    rep = audit(LOG, cps + witnessed(kept, "w.json"))
    assert rep.ok and rep.witness()[f"{T}/0/0"]["tree_size"] == 20
    rewritten = LOG[:3] + [dataclasses.replace(LOG[3], value=b"x")] + LOG[4:]
    assert [f.kind for f in audit(rewritten, witnessed(kept, "w.json")).findings] == ["root_mismatch"]
