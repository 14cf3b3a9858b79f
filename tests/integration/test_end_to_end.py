"""SDK -> broker -> processor -> SQL returns exactly what was logged."""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import modelog
from modelog.sdk.environment import packages
from conftest import run_cli
from waiting import wait_until

pytestmark = pytest.mark.broker


def test_sql_returns_exactly_what_was_logged(client, processor, settings, tmp_path):
    logged = []
    model = tmp_path / "model.pkl"
    model.write_bytes(b"\x00" * 1000)
    began = time.time()
    with client.start_run(experiment="credit-risk", name="baseline", tags={"team": "risk"}) as run:
        run.log_params({"lr": 0.01, "depth": 6})
        for step in range(300):
            values = {"loss": 1.0 / (step + 1), "auc": step / 300}
            if step == 7:
                values["loss"] = math.nan
            if step == 8:
                values["auc"] = math.inf
            run.log_metrics(values, step=step)
            logged += [(k, step, v) for k, v in values.items()]
        run.log_artifact(model)
        run.set_tags({"candidate": "yes"})
    took = time.time() - began
    client.wait_projected(timeout=30)

    got = modelog.sql(f"SELECT key, step, value FROM metrics WHERE run_id = '{run.id}' ORDER BY key, step", settings)
    expected = sorted(logged)
    assert len(got) == len(expected) == 600
    for (k, s, v), row in zip(expected, got.itertuples(index=False)):
        assert (row.key, row.step) == (k, s)
        assert (math.isnan(v) and math.isnan(row.value)) or row.value == v

    runs = modelog.sql("SELECT * FROM runs", settings)
    assert len(runs) == 1
    r = runs.iloc[0]
    assert (r.run_id, r.experiment, r["name"], r.status, r.actor) == (run.id, "credit-risk", "baseline", "FINISHED", "tester")
    assert 0 <= r.duration_s <= took and r.package_count == len(packages())
    environment = modelog.sql_arrow(
        "SELECT python_version, hostname, cpu_count, command, working_dir FROM run_environments", settings).to_pylist()
    assert environment == [{"python_version": platform.python_version(), "hostname": socket.gethostname(),
                            "cpu_count": os.cpu_count(), "command": [sys.executable, *sys.argv],
                            "working_dir": os.getcwd()}]  # this test process's own
    assert dict(modelog.sql("SELECT key, value FROM params", settings).values.tolist()) == {"lr": "0.01", "depth": "6"}
    assert dict(modelog.sql("SELECT key, value FROM tags", settings).values.tolist()) == {"team": "risk", "candidate": "yes"}
    latest = modelog.sql("SELECT key, step, points FROM latest_metrics ORDER BY key", settings).values.tolist()
    assert latest == [["auc", 299, 300], ["loss", 299, 300]]
    art = modelog.sql("SELECT path, size_bytes, sha256 FROM artifacts", settings).values.tolist()
    import hashlib

    assert art == [["model.pkl", 1000, hashlib.sha256(b"\x00" * 1000).hexdigest()]]
    audit = modelog.sql("SELECT event_type, actor, topic FROM audit_log", settings)
    assert set(audit.event_type) == {"ExperimentCreated", "RunStarted", "ParamsLogged", "MetricsLogged",
                                     "ArtifactLogged", "TagsSet", "RunEnded"}
    assert set(audit.actor) == {"tester"} and set(audit.topic) == {settings.tracking_topic}
    # Arrow is available too
    table = modelog.sql_arrow("SELECT count(*) AS n FROM metrics", settings)
    assert table.column("n").to_pylist() == [600]


def test_cli_sql_formats_and_read_only(env, client, processor):
    with client.start_run(experiment="e", name="cli") as run:
        run.log_metrics({"m": 2.5}, step=3)
    client.wait_projected()
    as_json = json.loads(run_cli(env, "sql", "SELECT run_id, key, value, step FROM metrics", "--format", "json").stdout)
    assert as_json == [{"run_id": run.id, "key": "m", "value": 2.5, "step": 3}]
    as_csv = run_cli(env, "sql", "SELECT key, step FROM metrics", "--format", "csv").stdout.splitlines()
    assert as_csv == ['"key","step"', '"m",3']
    table = run_cli(env, "sql", "SELECT name, status FROM runs").stdout
    assert "cli" in table and "FINISHED" in table and "(1 row)" in table
    denied = run_cli(env, "sql", "DELETE FROM log_events", check=False)
    assert denied.returncode != 0 and "read-only" in denied.stderr
    bad = run_cli(env, "sql", "SELECT nope FROM runs", check=False)
    assert bad.returncode != 0 and "nope" in bad.stderr
    assert "running" in run_cli(env, "process", "--status").stdout


def test_queries_work_from_the_file_when_no_processor_runs(env, client, processor, settings):
    with client.start_run(experiment="e") as run:
        run.log_metric("x", 1.0)
    client.wait_projected()
    assert processor.stop() == 0
    df = modelog.sql("SELECT run_id, status FROM runs", settings)
    assert df.values.tolist() == [[run.id, "FINISHED"]]


def _script(code: str, env: dict, tmp_path) -> subprocess.CompletedProcess:
    path = tmp_path / "job.py"
    path.write_text(textwrap.dedent(code))
    full = {k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")}
    full.update(env)
    return subprocess.run([sys.executable, str(path)], env=full, capture_output=True, text=True, timeout=60)


def test_sigterm_ends_the_run_killed_and_uncaught_errors_fail_it(env, processor, settings, tmp_path):
    killed = _script("""
        import os, signal, modelog
        run = modelog.start_run(experiment="jobs", name="sigterm")
        modelog.log_metric("loss", 0.5, step=1)
        print(run.id, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        import time; time.sleep(30)
    """, env, tmp_path)
    assert killed.returncode == 143, killed.stderr
    failed = _script("""
        import modelog
        run = modelog.start_run(experiment="jobs", name="crash")
        modelog.log_metric("loss", 0.5, step=1)
        raise ValueError("diverged")
    """, env, tmp_path)
    assert failed.returncode == 1 and "diverged" in failed.stderr
    ok = _script("""
        import modelog
        modelog.start_run(experiment="jobs", name="plain")
        modelog.log_metric("loss", 0.5, step=1)
    """, env, tmp_path)
    assert ok.returncode == 0, ok.stderr
    def ended():
        rows = modelog.sql_arrow("SELECT name, status, error FROM runs WHERE status <> 'RUNNING' ORDER BY name",
                                 settings).to_pylist()
        return rows if len(rows) == 3 else None

    rows = wait_until(ended, 30, "the three runs ended in the views", interval=0.1)
    assert [tuple(r.values()) for r in rows] == [("crash", "FAILED", "ValueError: diverged"),
                                                 ("plain", "FINISHED", None), ("sigterm", "KILLED", "Terminated")]
    assert modelog.sql("SELECT count(*) AS n FROM metrics", settings).n[0] == 3
