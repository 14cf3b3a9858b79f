"""Real broker, real processor processes, real DuckDB files.

The broker is testcontainers' Kafka when a Docker engine answers (or when
MODELOG_TEST_BROKER=testcontainers), else the embedded tansu broker on a free
port with in-memory storage. Every test gets its own topic prefix, home and
views file, so tests never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from typing import NamedTuple

import pytest

from harness import SESSION_TIMEOUT_MS, Processor, run_cli  # noqa: F401  (the tests import them from here)
from modelog import Client, Settings
from modelog.wire.home import free_port


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


@pytest.fixture
def processor(env, settings):
    p = Processor(env, settings).start()
    yield p
    p.stop()


class Served(NamedTuple):
    url: str    # http://127.0.0.1:<port>
    token: str  # the local admin token the server made on its first start


@pytest.fixture
def server(env, settings, processor) -> Served:
    """``modelog serve --background`` on a free port of 127.0.0.1 for the test's home (stopped after)."""
    port = free_port()
    run_cli(env, "serve", "--background", "--port", str(port), "--timeout", "120")
    try:
        yield Served(f"http://127.0.0.1:{port}", (settings.home / "server" / "admin.token").read_text().strip())
    finally:
        run_cli(env, "serve", "--stop", check=False)
