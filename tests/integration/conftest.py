"""Real broker, real processor processes, real DuckDB files.

The broker is testcontainers' Kafka when a Docker engine answers (or when
MODELOG_TEST_BROKER=testcontainers), else the embedded tansu broker on a free
port with in-memory storage. Every test gets its own topic prefix, home and
views file, so tests never see each other's data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from modelog import Client, Settings

SESSION_TIMEOUT_MS = 2000  # fast consumer-group joins on tansu (see shared BROKER.md)


def _docker_available() -> bool:
    if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
        return False
    try:
        import docker

        client = docker.from_env()
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory):
    choice = os.environ.get("MODELOG_TEST_BROKER", "auto")
    if choice == "testcontainers" or (choice == "auto" and _docker_available()):
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            yield kafka.get_bootstrap_server()
        return
    from modelog.local.broker import running_broker

    with running_broker(tmp_path_factory.mktemp("broker-home"), storage="memory") as address:
        yield address


@pytest.fixture
def env(bootstrap, tmp_path) -> dict[str, str]:
    """MODELOG_* environment of one isolated test deployment."""
    return {
        "MODELOG_HOME": str(tmp_path / "home"),
        "MODELOG_KAFKA_BOOTSTRAP": bootstrap,
        "MODELOG_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}.",
        "MODELOG_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "MODELOG_LINGER_MS": "20",
        "MODELOG_PRINCIPAL": "tester",
        # log_artifact stores the bytes: in a directory of the test's own (test_artifacts.py covers the
        # embedded broker's S3 server, the default)
        "MODELOG_ARTIFACT_URI": (tmp_path / "artifacts").as_uri(),
    }


@pytest.fixture
def settings(env) -> Settings:
    return Settings.load(env=env)


@pytest.fixture
def client(settings):
    c = Client(settings)
    yield c
    c.close()


class Processor:
    """``modelog process`` as a real child process."""

    def __init__(self, env: dict[str, str], settings: Settings, args: tuple[str, ...] = ()) -> None:
        self.args = args
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")}
        self.env.update(env)
        self.settings = settings
        self.proc: subprocess.Popen | None = None
        self.log = Path(env["MODELOG_HOME"]) / "processor-test.log"

    def start(self, timeout: float = 60) -> Processor:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        info_file = self.settings.home / "processor.json"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "modelog", "process", "--loglevel", "info", *self.args],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"processor exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                info = json.loads(info_file.read_text())
                if info.get("pid") == self.proc.pid and info.get("ready"):
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"processor not ready:\n{self.log.read_text()[-3000:]}")

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


@pytest.fixture
def processor(env, settings):
    p = Processor(env, settings).start()
    yield p
    p.stop()


def run_cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")}
    full.update(env)
    out = subprocess.run([sys.executable, "-m", "modelog", *args], env=full, capture_output=True, text=True,
                         timeout=120)
    if check and out.returncode != 0:
        raise AssertionError(f"modelog {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out
