"""The quickstart's main job, as a user runs it: embedded broker (durable), processor, training, leaderboard."""

from __future__ import annotations

import os
import subprocess
import sys

import duckdb
import pytest

pytestmark = pytest.mark.broker


def test_demo_runs_end_to_end_on_the_embedded_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")}
    env.update(MODELOG_HOME=str(tmp_path / "home"), MODELOG_SESSION_TIMEOUT_MS="2000")
    out = subprocess.run([sys.executable, "-m", "modelog", "demo", "--runs", "3"], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Leaderboard" in out.stdout and "(3 rows)" in out.stdout
    assert "gbt-lr" in out.stdout
    # the demo stopped what it started; the views file stays queryable offline
    con = duckdb.connect(str(tmp_path / "home" / "views.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM runs WHERE status = 'FINISHED'").fetchone() == (3,)
        assert con.execute("SELECT count(DISTINCT key) FROM metrics").fetchone() == (4,)
        assert con.execute("SELECT count(*) FROM artifacts WHERE path = 'model.pkl'").fetchone() == (3,)
    finally:
        con.close()
    status = subprocess.run([sys.executable, "-m", "modelog", "broker", "status"], env=env, capture_output=True,
                            text=True)
    assert status.returncode == 1 and "not running" in status.stdout


def test_monitoring_demo_alert_reaches_tail_webhook_and_metrics(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")}
    env.update(MODELOG_HOME=str(tmp_path / "home"), MODELOG_SESSION_TIMEOUT_MS="2000")
    out = subprocess.run([sys.executable, "-m", "modelog", "demo", "monitoring"], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "RAISED" in out.stdout and "dataset_drift" in out.stdout  # alerts tail
    assert "Idempotency-Key=breast-cancer-gbt/prod/dataset_drift/3:RAISED" in out.stdout  # the webhook
    assert 'modelog_alert_open{model="breast-cancer-gbt",deployment="prod",rule="dataset_drift"} 1' in out.stdout
    con = duckdb.connect(str(tmp_path / "home" / "views.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT list(dataset_drift ORDER BY \"window\") FROM drift_windows").fetchone() == (
            [False, False, False, True, True, True],)
        accuracy = dict(con.execute("SELECT \"window\", accuracy FROM performance").fetchall())
        assert min(accuracy[w] for w in (0, 1, 2)) > max(accuracy[w] for w in (3, 4, 5))
    finally:
        con.close()
