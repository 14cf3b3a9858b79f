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


def test_a_fetch_that_jumps_forward_is_read_again_from_the_first_record_not_delivered(env, settings, tmp_path):
    topic, n = f"{settings.topic_prefix}contiguity", 60
    admin = AdminClient({"bootstrap.servers": settings.resolve_bootstrap()})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": settings.resolve_bootstrap()})
    for i in range(n):
        producer.produce(topic, key=b"k", value=str(i).encode())
    assert producer.flush(30) == 0
    out, log = tmp_path / "offsets.txt", tmp_path / "app.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, str(APP), topic, str(out), "10", "40"], env=child_env(env),
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
    assert "jumped" in lines  # the position did move (else this test would prove nothing)
    offsets = [int(x) for x in lines if x != "jumped"]
    assert offsets == list(range(n))  # every record, once, in order
    text = log.read_text()
    assert "but the next record to deliver is" in text and "reading again from" in text
