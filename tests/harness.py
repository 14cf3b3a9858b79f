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
    :func:`published_since` reads from)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(settings.librdkafka(**{"group.id": f"test-ends-{os.getpid()}", "enable.auto.commit": False}))
    try:
        listed = consumer.list_topics(timeout=10).topics
        return {(topic, p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for topic in settings.projected_topics if topic in listed for p in listed[topic].partitions}
    finally:
        consumer.close()


def published_since(settings: Settings, ends: dict[tuple[str, int], int]) -> list[str]:
    """The event types of every record put on those topics since ``ends`` were read (a partition created
    since counts from its start): the log itself says what was published, with no wait for a stray event."""
    from confluent_kafka import Consumer, TopicPartition

    now = log_ends(settings)
    consumer = Consumer(settings.librdkafka(**{"group.id": f"test-since-{os.getpid()}", "enable.auto.commit": False}))
    types: list[str] = []
    try:
        for (topic, p), end in now.items():
            start = ends.get((topic, p), 0)
            if end <= start:
                continue
            consumer.assign([TopicPartition(topic, p, start)])
            offset = start
            while offset < end:
                msg = consumer.poll(10)
                assert msg is not None, f"{topic}/{p}: offsets {offset}..{end} could not be read"
                if msg.error():
                    continue
                types.append(dict(msg.headers() or []).get("modelog.event_type", b"?").decode())
                offset = msg.offset() + 1
    finally:
        consumer.close()
    return types
