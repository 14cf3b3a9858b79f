"""The embedded broker: lifecycle, and a log that survives stop/start with s3 storage."""

from __future__ import annotations

import logging
import socket

import pytest

import modelog
from conftest import run_cli
from modelog import BrokerError, Client, Settings
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


def test_a_taken_port_moves_the_broker_or_fails_when_it_was_asked_for(tmp_path, caplog):
    broker = EmbeddedBroker(tmp_path, storage="memory")
    first = broker.start()
    broker.stop()
    port = int(first.rsplit(":", 1)[1])
    with socket.socket() as squatter:  # another process takes the port while the broker is down
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with caplog.at_level(logging.WARNING, logger="modelog.local.broker"):
            moved = broker.start()
        try:
            assert moved != first and broker.status()["address"] == moved
            assert f"previous port {port} is taken: it moves to {moved.rsplit(':', 1)[1]}" in caplog.text
        finally:
            broker.stop()
        with pytest.raises(BrokerError, match=f"port {port} is in use by another process"):
            broker.start(port=port, timeout=15)  # asked for explicitly: not moved silently
    assert broker.address() is None


def test_a_port_lost_to_another_process_before_tansu_binds_it_is_retried(tmp_path, monkeypatch, caplog):
    from modelog.local import broker as broker_mod
    from modelog.wire.home import free_port as real_free_port

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([taken])  # the first pick is lost to the squatter; then the real helper
        monkeypatch.setattr(broker_mod, "free_port", lambda: next(picks, None) or real_free_port())
        broker = EmbeddedBroker(tmp_path, storage="memory")
        with caplog.at_level(logging.WARNING, logger="modelog.local.broker"):
            address = broker.start()
        try:
            assert address != f"127.0.0.1:{taken}" and broker.status()["address"] == address
            assert f"tansu could not bind 127.0.0.1:{taken} (address in use): retrying on port" in caplog.text
        finally:
            broker.stop()


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
