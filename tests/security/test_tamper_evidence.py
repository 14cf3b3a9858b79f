"""Attacks 26 and 27 on the real broker and processor: the log rewritten where the embedded broker keeps it,
and a falsified checkpoint. ``modelog audit verify`` must name what changed (decision 0023).

The broker here is tansu on ``s3://`` storage, backed by the embedded on-disk S3 server (the default of
``modelog broker start``): each produced batch is a file ``<home>/broker/s3/modelog/clusters/<cluster>/topics/
<topic>/partitions/<partition:010d>/records/<base offset:020d>.batch`` holding a Kafka v2 record batch
(offset deltas from 0). The attacker rewrites such a file -- the record's bytes, the batch's length and its
CRC-32C recomputed, uncompressed -- and the broker then serves the altered record to every consumer.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from confluent_kafka import Producer

from modelog import Settings
from modelog.processors.verify import read_one
from modelog.wire.emitter import KafkaEmitter
from modelog.wire.envelope import EventFactory
from waiting import wait_until

from conftest import Processor, deployment_env, run_cli

pytestmark = pytest.mark.broker

EVENTS_PER_KEY = 6
KEYS = 24
PARTITIONS = 6  # one untouched partition per attack


@pytest.fixture(scope="module")
def s3_broker(tmp_path_factory):
    """The embedded broker as `modelog broker start` runs it: tansu on s3:// over the local S3 server."""
    from modelog.local.broker import running_broker

    home = tmp_path_factory.mktemp("s3-broker-home")
    with running_broker(home, storage="s3") as address:
        yield address, home / "broker" / "s3" / "modelog"


class Deployment:
    def __init__(self, env: dict[str, str], settings: Settings, storage: Path, processor: Processor) -> None:
        self.env, self.settings, self.storage, self.processor = env, settings, storage, processor
        self.used: set[int] = set()  # partitions an attack already rewrote

    def verify(self, *extra: str) -> tuple[int, dict | None, str]:
        out = run_cli(self.env, "audit", "verify", "--json", "--idle-timeout", "3", *extra, check=False)
        try:
            return out.returncode, json.loads(out.stdout), out.stderr
        except ValueError:
            return out.returncode, None, out.stdout + out.stderr

    def batch_files(self, partition: int) -> list[Path]:
        return sorted(self.storage.glob(f"clusters/*/topics/{self.settings.tracking_topic}/partitions/"
                                        f"{partition:010d}/records/*.batch"))

    def take_batch(self, min_records: int = 3) -> tuple[int, Path, int, list]:
        """A partition no other attack touched, and one of its batch files with at least ``min_records``
        records: (partition, file, base offset, records)."""
        for partition in range(self.settings.partitions):
            if partition in self.used:
                continue
            for path in self.batch_files(partition):
                records = list(DefaultRecordBatch(path.read_bytes()))
                if len(records) >= min_records:
                    self.used.add(partition)
                    return partition, path, int(path.stem), records
        raise AssertionError("no partition left with a batch of several records")


def write_batch(path: Path, original: bytes, records: list[tuple[int, object, bytes | None]]) -> None:
    """Replace the batch file with ``records`` ((offset delta, record, new value)), uncompressed, with the
    batch length and CRC-32C recomputed (consumers check the CRC: librdkafka with check.crcs, aiokafka always)."""
    old = DefaultRecordBatch(original)
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=old.producer_id, producer_epoch=old.producer_epoch,
                                        base_sequence=old.base_sequence, batch_size=1 << 24)
    for delta, r, value in records:
        builder.append(delta, timestamp=r.timestamp, key=r.key, value=value, headers=r.headers)
    data = bytes(builder.build())
    assert DefaultRecordBatch(data).validate_crc()
    path.write_bytes(data)


@pytest.fixture(scope="module")
def deployment(s3_broker, tmp_path_factory):
    address, storage = s3_broker
    home = tmp_path_factory.mktemp("tamper") / "home"
    env = deployment_env(address, home, "alice") | {"MODELOG_CHECKPOINT_EVERY": "5",
                                                    "MODELOG_CHECKPOINT_SECONDS": "1",
                                                    "MODELOG_TOPIC_PARTITIONS": str(PARTITIONS)}
    settings = Settings.load(env=env)
    run_cli(env, "init")  # alice is the admin; the processor's key is registered and on disk before it starts
    processor = Processor(env, settings).start()
    try:
        d = Deployment(env, settings, storage, processor)
        # several signed events per key, flushed together: each partition gets batches of several records
        emitter = KafkaEmitter(settings)  # alice's key (written by init): every record signed
        events = EventFactory(settings, program="attack-setup")
        for i in range(KEYS):
            key = f"exp-{uuid.uuid4().hex[:6]}-{i}"
            emitter.emit([events.make("ExperimentCreated", "experiment", key, experiment=key,
                                      description=f"version {n} of {key}") for n in range(EVENTS_PER_KEY)])
        emitter.flush()
        emitter.close()

        def covered():
            code, out, err = d.verify()
            return out if code == 0 and out and not out["uncovered"] else None

        d.baseline = wait_until(covered, 90, lambda: f"every record is checkpointed and verifies: {d.verify()}")
        # an auditor keeps the latest checkpoints outside the broker's reach
        d.witness = home.parent / "witness.json"
        code, out, err = d.verify("--witness", str(d.witness))
        assert code == 0 and d.witness.exists(), err
        yield d
    finally:
        processor.stop()


def findings_of(out: dict, partition: int) -> list[dict]:
    return [f for f in out["findings"] if f["partition"] == partition]


def test_26_an_untouched_log_verifies_against_signed_checkpoints(deployment):
    out = deployment.baseline
    assert out["ok"] and out["findings"] == []
    assert out["records"] >= KEYS * EVENTS_PER_KEY and out["matched"] == out["checkpoints"] >= 4
    # every checkpoint signed by the processor's key (registered by modelog init), none unsigned
    assert set(out["signatures"]) == {"signed by modelog-projector"}
    assert out["last_checkpoint"]["signer"] == "modelog-projector"
    text = run_cli(deployment.env, "audit", "verify", "--idle-timeout", "3")
    assert "verified:" in text.stdout and "last checkpoint:" in text.stdout and "warning" not in text.stdout


def test_26_a_record_rewritten_in_the_brokers_storage_is_caught(deployment):
    d = deployment
    partition, path, base, records = d.take_batch()
    victim = records[1]
    forged = victim.value.replace(b"version", b"VERSION")
    assert forged != victim.value
    write_batch(path, path.read_bytes(), [(r.offset, r, forged if r is victim else r.value) for r in records])
    offset = base + victim.offset
    served = read_one(d.settings, d.settings.tracking_topic, partition, offset)
    assert served is not None and served.value == forged, "the broker serves the rewritten record"

    code, out, err = d.verify()
    assert code == 1 and out is not None and not out["ok"], err
    (finding,) = findings_of(out, partition)
    assert (finding["kind"], finding["offset"]) == ("changed", offset), finding
    assert "bad_signature" in finding["now"]  # alice's signature no longer verifies over the bytes
    text = run_cli(d.env, "audit", "verify", "--idle-timeout", "3", check=False)
    assert text.returncode == 1
    assert f"changed at {d.settings.tracking_topic}/{partition}/{offset}" in text.stderr


def test_26_a_record_deleted_from_the_brokers_storage_is_caught(deployment):
    d = deployment
    partition, path, base, records = d.take_batch()
    gone = records[1]  # the others keep their offsets: a gap, as compaction would leave
    write_batch(path, path.read_bytes(), [(r.offset, r, r.value) for r in records if r is not gone])
    code, out, err = d.verify()
    assert code == 1 and out is not None, err
    (finding,) = findings_of(out, partition)
    assert (finding["kind"], finding["offset"]) == ("removed", base + gone.offset), finding


def test_26_records_reordered_in_the_brokers_storage_are_caught(deployment):
    d = deployment
    partition, path, base, records = d.take_batch()
    a, b = records[0], records[1]
    assert a.value != b.value
    # swap the two records' contents: each keeps its valid signature, only the order changed
    swapped = [(a.offset, b, b.value), (b.offset, a, a.value)] + [(r.offset, r, r.value) for r in records[2:]]
    write_batch(path, path.read_bytes(), swapped)
    code, out, err = d.verify()
    assert code == 1 and out is not None, err
    (finding,) = findings_of(out, partition)
    assert (finding["kind"], finding["offset"]) == ("reordered", base + a.offset), finding
    assert "the signature verifies" in finding["now"]  # signatures alone would not have caught it


def test_26_a_tail_truncated_with_its_checkpoints_is_caught_by_the_witness(deployment):
    from modelog.wire.codec import Codec

    d = deployment
    partition, _, _, _ = d.take_batch(min_records=1)
    last = d.batch_files(partition)[-1]
    cut = int(last.stem)  # every record from this offset on disappears
    last.unlink()
    # ... and every checkpoint that covered them, from the checkpoints topic's batch files
    codec, dropped = Codec(), 0
    for path in sorted(d.storage.glob(f"clusters/*/topics/{d.settings.checkpoints_topic}/partitions/*/records/*.batch")):
        original = path.read_bytes()
        records = list(DefaultRecordBatch(original))
        keep = []
        for r in records:
            cp = codec.decode(r.value).record
            if (cp["topic"], cp["partition"]) == (d.settings.tracking_topic, partition) and cp["next_offset"] > cut:
                dropped += 1
            else:
                keep.append((r.offset, r, r.value))
        if not keep:
            path.unlink()
        elif len(keep) < len(records):
            write_batch(path, original, keep)
    assert dropped >= 1
    code, out, err = d.verify()
    assert out is not None, err
    assert findings_of(out, partition) == []  # the limit: what is left on the log agrees with itself
    code, out, err = d.verify("--witness", str(d.witness))
    assert code == 1 and out is not None, err
    (finding,) = findings_of(out, partition)
    assert finding["kind"] == "removed" and "removed" in finding["detail"], finding
    assert out["witnessed"] >= 1


def test_27_a_falsified_checkpoint_is_rejected(deployment):
    d = deployment
    free = [p for p in range(d.settings.partitions) if p not in d.used]
    assert free, "a partition no other attack touched"
    # a checkpoint of that partition as the processor signed it, its root changed, re-published with its headers
    from modelog.processors.verify import scan

    found = []
    scan(d.settings, (d.settings.checkpoints_topic,), found.append, idle_timeout=3)
    from modelog.wire.codec import Codec

    codec = Codec()
    mine = [r for r in found if codec.decode(r.value).record["partition"] in free
            and codec.decode(r.value).record["topic"] == d.settings.tracking_topic]
    assert mine
    original = mine[0]
    record = codec.decode(original.value).record
    record["root_hash"] = bytes(32)
    forged = codec.encode("LogCheckpoint", record)
    p = Producer({"bootstrap.servers": d.settings.bootstrap})
    p.produce(d.settings.checkpoints_topic, key=original.key, value=forged, headers=list(original.headers))
    assert p.flush(30) == 0
    code, out, err = d.verify()
    assert code == 1 and out is not None, err
    kinds = {(f["kind"], f["partition"]) for f in out["findings"]}
    assert ("bad_signature", record["partition"]) in kinds, out["findings"]  # its signature no longer verifies
    assert ("root_mismatch", record["partition"]) in kinds, out["findings"]  # and it disagrees with the log
