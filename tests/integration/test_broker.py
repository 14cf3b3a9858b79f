"""The embedded broker: lifecycle, and a log that survives stop/start with s3 storage."""

from __future__ import annotations

import pytest

import modelog
from conftest import run_cli
from modelog import Client, Settings
from modelog.local.broker import EmbeddedBroker

pytestmark = pytest.mark.broker


def test_lifecycle_memory(tmp_path):
    broker = EmbeddedBroker(tmp_path, storage="memory")
    assert broker.status()["running"] is False and broker.stop() is False
    address = broker.start()
    assert broker.start() == address  # idempotent
    st = broker.status()
    assert st["running"] and st["address"] == address and st["storage"] == "memory"
    assert broker.stop() is True
    assert broker.address() is None


def test_stop_and_start_lose_nothing_with_s3_storage(tmp_path):
    home = tmp_path / "home"
    env = {"MODELOG_HOME": str(home), "MODELOG_SESSION_TIMEOUT_MS": "2000"}
    address = run_cli(env, "broker", "start").stdout.strip()
    assert address.startswith("127.0.0.1:")
    assert address in run_cli(env, "broker", "status").stdout
    try:
        settings = Settings.load(env=env)  # no MODELOG_KAFKA_BOOTSTRAP: the embedded broker is found
        client = Client(settings)
        with client.start_run(experiment="durable", name="before-restart") as run:
            for s in range(100):
                run.log_metrics({"loss": 1 / (s + 1)}, step=s)
        client.close()

        assert "stopped" in run_cli(env, "broker", "stop").stdout
        assert run_cli(env, "broker", "status", check=False).returncode == 1
        assert run_cli(env, "broker", "start").stdout.strip() == address  # same port again

        run_cli(env, "rebuild")  # the views come from the log alone
        runs = modelog.sql_arrow("SELECT run_id, name, status FROM runs", settings).to_pylist()
        assert runs == [{"run_id": run.id, "name": "before-restart", "status": "FINISHED"}]
        assert modelog.sql("SELECT count(*) AS n FROM metrics", settings).n[0] == 100
    finally:
        run_cli(env, "broker", "stop")
