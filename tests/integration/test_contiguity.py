"""A processor's consumer delivers a source partition's records in order, none skipped, even when its
fetch position moves past records it never delivered (processors/contiguous.py; the drift processor lost
records that way after restarts, docs/reliability.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from harness import child_env
from waiting import wait_until

APP = Path(__file__).with_name("contiguity_app.py")


def _delivered_offsets(env, settings, tmp_path, jump_after: int, jump_to: int, n: int = 60,
                       mode: str = "position") -> tuple[list, str]:
    """Run contiguity_app.py over a topic of ``n`` records; the offsets it was given (and "jumped") and its log."""
    topic = f"{settings.topic_prefix}contiguity"
    admin = AdminClient({"bootstrap.servers": settings.resolve_bootstrap()})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": settings.resolve_bootstrap()})
    for i in range(n):
        producer.produce(topic, key=b"k", value=str(i).encode())
    assert producer.flush(30) == 0
    out, log = tmp_path / "offsets.txt", tmp_path / "app.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, str(APP), topic, str(out), str(jump_after), str(jump_to), mode],
                                env=child_env(env),
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        def delivered() -> list[str]:
            if proc.poll() is not None:
                raise RuntimeError(f"the app exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            lines = out.read_text().split() if out.exists() else []
            return lines if str(n - 1) in lines else []

        lines = wait_until(delivered, 90, lambda: f"offset {n - 1} delivered:\n{log.read_text()[-3000:]}")
    finally:
        proc.terminate()
        proc.wait(30)
    return lines, log.read_text()


def test_a_fetch_that_jumps_forward_is_read_again_from_the_first_record_not_delivered(env, settings, tmp_path):
    lines, log = _delivered_offsets(env, settings, tmp_path, jump_after=10, jump_to=40)
    assert "jumped" in lines  # the position did move (else this test would prove nothing)
    assert [int(x) for x in lines if x != "jumped"] == list(range(60))  # every record, once, in order
    assert "fetched offset 40 but the next record to deliver is" in log and "reading again from" in log


def test_a_group_without_a_committed_offset_reads_from_the_first_record(env, settings, tmp_path):
    """tansu does not always answer a group's committed offset; where the Kafka consumer's position then came
    from is unknown, so a partition without one is read from offset 0 (the processors read from the earliest)."""
    lines, log = _delivered_offsets(env, settings, tmp_path, jump_after=-1, jump_to=20)
    assert lines[0] == "jumped"  # moved before anything was delivered
    assert [int(x) for x in lines[1:]] == list(range(60))
    assert "fetched offset 20 but the next record to deliver is 0: reading again from 0" in log


def test_records_skipped_at_the_end_of_a_partition_are_read_again_once_the_agent_is_idle(env, settings, tmp_path):
    """The fetch position jumps to the end of the topic: no later record shows the hole to the consumer, so
    only the agent's side (processors/contiguous.py: Progress) can find the records it never got."""
    lines, log = _delivered_offsets(env, settings, tmp_path, jump_after=10, jump_to=60)
    assert "jumped" in lines
    assert [int(x) for x in lines if x != "jumped"] == list(range(60))  # every record, once, in order
    assert "are on the log but never reached the processor" in log and "reading again from" in log


def test_records_faust_drops_after_the_consumer_handed_them_over_are_read_again(env, settings, tmp_path):
    """faust's read offset jumps ahead (as a seek racing a fetch being handed over left it, CI 2026-12-01): faust
    drops the records below it although the consumer handed them over in order; the agent's side holds back
    what comes past the hole and reads the partition again from it."""
    lines, log = _delivered_offsets(env, settings, tmp_path, jump_after=10, jump_to=30, mode="read-offset")
    assert "jumped" in lines
    assert [int(x) for x in lines if x != "jumped"] == list(range(60))  # every record, once, in order
    assert "the processor was given offset 30 but the next it needs is" in log
