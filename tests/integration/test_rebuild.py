"""Rebuild from the log equals the live views, row for row."""

from __future__ import annotations

import math

import duckdb
import pytest

from conftest import run_cli
from modelog.processors.store import VIEW_NAMES

pytestmark = pytest.mark.broker


def rows(path, view):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return sorted(map(repr, con.execute(f"SELECT * FROM {view}").fetchall()))
    finally:
        con.close()


def test_rebuild_equals_live(env, client, processor, settings, tmp_path, bootstrap):
    for i in range(3):
        with client.start_run(experiment="rb", name=f"r{i}", tags={"i": str(i)}) as run:
            run.log_params({"i": i, "lr": 0.1 * i})
            for s in range(200):
                run.log_metrics({"loss": math.nan if s == 3 else 1 / (s + 1), "acc": s / 200}, step=s)
            run.set_tags({"i": str(i + 10)})
    with client.start_run(experiment="rb", name="per-point") as run:  # batches in the first form, as the API writes them
        client.publish("MetricsLogged", "run", run.id, run_id=run.id, points=[
            {"key": "loss", "value": math.inf if s == 5 else s / 7, "step": s, "timestamp": 1_760_000_000_000_000 + s}
            for s in range(50)])
        run.log_metrics({"loss": 0.5}, step=50)  # and the SDK's columnar batch after them
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(settings.tracking_topic, value=b"not an event")  # a dead letter is part of the history too
    p.flush(10)
    with client.start_run(experiment="rb", name="last"):
        pass
    client.wait_projected()

    out = run_cli(env, "rebuild", "--output", str(tmp_path / "rebuilt.duckdb"))
    assert "rebuilt" in out.stdout and "records" in out.stdout
    assert "rebuild [" in out.stderr  # progress
    processor.stop()
    for view in VIEW_NAMES:
        live, rebuilt = rows(settings.views_path, view), rows(tmp_path / "rebuilt.duckdb", view)
        assert live == rebuilt, view
    assert len(rows(settings.views_path, "metrics")) == 1251
    assert len(rows(settings.views_path, "dead_letters")) == 1

    # in place, with the processor stopped: same again
    run_cli(env, "rebuild")
    for view in VIEW_NAMES:
        assert rows(settings.views_path, view) == rows(tmp_path / "rebuilt.duckdb", view), view


def test_rebuild_refuses_to_replace_views_a_processor_uses(env, processor):
    out = run_cli(env, "rebuild", check=False)
    assert out.returncode != 0 and "stop it first" in out.stderr
