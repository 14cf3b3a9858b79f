"""What the integration, security and UI suites share: the processor as a real child process and the
CLI as a real subprocess, each against a test's own MODELOG_* environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from modelog import Settings
from waiting import wait_until

SESSION_TIMEOUT_MS = 2000  # fast consumer-group joins on tansu (see shared BROKER.md)


def child_env(env: dict[str, str], **extra: str) -> dict[str, str]:
    """This process's environment without its MODELOG_* variables, then ``env`` and ``extra``."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")} | env | extra


class Processor:
    """``modelog process`` as a real child process."""

    def __init__(self, env: dict[str, str], settings: Settings, args: tuple[str, ...] = ()) -> None:
        self.args = args
        self.env = child_env(env)
        self.settings = settings
        self.proc: subprocess.Popen | None = None
        self.log = Path(env["MODELOG_HOME"]) / "processor-test.log"

    def start(self, timeout: float = 60) -> Processor:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        info_file = self.settings.home / "processor.json"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "modelog", "process", "--loglevel", "info", *self.args],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT)

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"processor exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                info = json.loads(info_file.read_text())
            except (OSError, ValueError):
                return False
            return info.get("pid") == self.proc.pid and bool(info.get("ready"))

        wait_until(ready, timeout, lambda: f"the processor is ready:\n{self.log.read_text()[-3000:]}")
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.terminate()
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def run_cli(env: dict[str, str], *args: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
    """``modelog ARGS`` in a subprocess with ``env`` (and ``extra``); raises with its output unless it exits 0
    (``check=False``: the caller looks at the exit code)."""
    out = subprocess.run([sys.executable, "-m", "modelog", *args], env=child_env(env, **extra), capture_output=True,
                         text=True, timeout=120)
    if check and out.returncode != 0:
        raise AssertionError(f"modelog {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def log_ends(settings: Settings) -> dict[tuple[str, int], int]:
    """The end offset of every partition of the topics the processor projects (what a later
    :func:`published_since` reads from). Read to the end, not asked: tansu's ListOffsets under-reports the
    end (shared BROKER.md; docs/alerts.md), the end of a fetch is right."""
    return _read_to_end(settings, None)[0]


def published_since(settings: Settings, ends: dict[tuple[str, int], int]) -> dict[str, str]:
    """{event id: event type} of every record put on those topics since ``ends`` were read (a partition
    created since counts from its start): the log itself says what was published, with no wait for a stray
    event. By event id: a record the emitter sent again after a retriable error is one event."""
    return _read_to_end(settings, ends)[1]


def _read_to_end(settings: Settings, starts: dict[tuple[str, int], int] | None, timeout: float = 30.0
                 ) -> tuple[dict[tuple[str, int], int], dict[str, str]]:
    """Read every partition of the projected topics from ``starts`` (None: from ListOffsets' answer, at or
    before the end) to its end; returns (the ends, {event id: event type} of the records read)."""
    import time

    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer(settings.librdkafka(**{"group.id": f"test-ends-{os.getpid()}", "enable.auto.commit": False,
                                               "auto.offset.reset": "earliest", "enable.partition.eof": True}))
    ends: dict[tuple[str, int], int] = {}
    events: dict[str, str] = {}
    try:
        listed = consumer.list_topics(timeout=10).topics
        parts = [(t, p) for t in settings.projected_topics if t in listed for p in listed[t].partitions]
        if starts is None:
            starts = {tp: consumer.get_watermark_offsets(TopicPartition(*tp), timeout=10)[1] for tp in parts}
        consumer.assign([TopicPartition(t, p, starts.get((t, p), 0)) for t, p in parts])
        deadline = time.monotonic() + timeout
        while len(ends) < len(parts):
            assert time.monotonic() < deadline, f"not read to their ends: {sorted(set(parts) - set(ends))}"
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            tp = (msg.topic(), msg.partition())
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    ends[tp] = msg.offset()
                continue
            headers = dict(msg.headers() or [])
            events[headers.get("modelog.event_id", b"?").decode()] = headers.get("modelog.event_type", b"?").decode()
    finally:
        consumer.close()
    return ends, events
