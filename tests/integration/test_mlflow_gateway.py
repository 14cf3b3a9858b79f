"""The stock ``mlflow`` client (3.17.2) against ``modelog serve``, the real broker and a real processor.

mlflow pins pyarrow < 26, which clashes with this project's venv, so the client runs in a venv of its own,
``tests/.venv-mlflow``, created on first use from ``tests/requirements-mlflow.txt`` (pinned) and reused
while the pins match (as bench/compare.py does for its peers). The script (``mlflow_client/drive.py``)
asserts what the client reads back; this test asserts what modelog recorded: the views, and the token's
principal as the actor in ``audit_log``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import run_cli
from modelog.consumers.query import sql_arrow
from test_api import token_for

pytestmark = pytest.mark.broker

TESTS = Path(__file__).resolve().parents[1]
VENV = TESTS / ".venv-mlflow"
REQUIREMENTS = TESTS / "requirements-mlflow.txt"
DRIVE = Path(__file__).resolve().parent / "mlflow_client" / "drive.py"


def _pins(text: str) -> list[str]:
    return sorted(line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip())


def _pypi_reachable() -> bool:
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/")
    try:
        with urllib.request.urlopen(index.rstrip("/") + "/mlflow/", timeout=10):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def mlflow_python() -> Path:
    """The mlflow venv's python: created once from the pinned requirements, kept while the pins match."""
    python = VENV / "bin" / "python"
    stamp = VENV / REQUIREMENTS.name
    wanted = REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and _pins(stamp.read_text()) == _pins(wanted):
        return python
    base = getattr(sys, "_base_executable", None) or "python3"
    made = subprocess.run([base, "-m", "venv", "--clear", str(VENV)], capture_output=True, text=True)
    if made.returncode == 0:
        made = subprocess.run([str(python), "-m", "pip", "install", "-qq", "--disable-pip-version-check", "-r",
                               str(REQUIREMENTS)], capture_output=True, text=True, timeout=1800)
    if made.returncode != 0:
        if not _pypi_reachable():
            pytest.skip(f"cannot create {VENV.name}: the package index is unreachable ({made.stderr[-300:]})")
        raise AssertionError(f"creating {VENV} failed:\n{made.stdout[-2000:]}\n{made.stderr[-2000:]}")
    stamp.write_text(wanted)
    return python


def q(settings, query, params=None):
    return sql_arrow(query, settings, params=params).to_pylist()


def drive(python: Path, url: str, auth: dict[str, str], out: Path, phase: str, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELOG_", "MLFLOW_"))}
    env.update(auth, MLFLOW_TRACKING_URI=url, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", HOME=str(tmp_path),
               GIT_PYTHON_REFRESH="quiet", MLFLOW_ENABLE_ASYNC_LOGGING="false")
    done = subprocess.run([str(python), str(DRIVE), str(out), phase], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, f"mlflow client ({phase}) failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    return json.loads(out.read_text())


def test_the_stock_mlflow_client_tracks_stores_autologs_and_registers_through_modelog(
        mlflow_python, env, settings, server, tmp_path):
    writer = token_for(env, "ml-team", "maintainer")
    out = drive(mlflow_python, server.url, {"MLFLOW_TRACKING_TOKEN": writer}, tmp_path / "main.json", "main", tmp_path)
    rid, rid3 = out["run_id"], out["run_id3"]

    # the same views as the SDK's, with the token's principal as the actor
    run = q(settings, "SELECT experiment, name, status, actor FROM runs WHERE run_id = ?", [rid])
    assert run == [{"experiment": "mlflow-gw", "name": "first", "status": "FINISHED", "actor": "ml-team"}]
    params = {r["key"]: r["value"] for r in q(settings, "SELECT key, value FROM params WHERE run_id = ?", [rid])}
    assert params == {"lr": "0.01", "depth": "6", "model": "gbt", "batch": "32"}
    points = q(settings, "SELECT step, value FROM metrics WHERE run_id = ? AND key = 'loss' ORDER BY step", [rid])
    assert [p["step"] for p in points] == [0, 1, 2, 3, 4] and points[-1]["value"] == 0.2
    arts = q(settings, "SELECT path, size_bytes, content_address FROM artifacts WHERE run_id = ? ORDER BY path", [rid])
    assert [a["path"] for a in arts] == ["notes.txt", "outputs/a.csv", "outputs/sub/b.bin"]
    assert all(a["content_address"] and "/sha256/" in a["content_address"] for a in arts)
    assert arts[2]["size_bytes"] == 70_000
    # autologging: params, metrics and the model's files as artifacts of its run
    assert q(settings, "SELECT value FROM params WHERE run_id = ? AND key = 'C'", [rid3]) == [{"value": "0.5"}]
    assert q(settings, "SELECT count(*) AS n FROM latest_metrics WHERE run_id = ? AND key = "
                       "'training_accuracy_score'", [rid3]) == [{"n": 1}]
    model_files = [r["path"] for r in q(settings, "SELECT path FROM artifacts WHERE run_id = ? ORDER BY path", [rid3])]
    assert "model/MLmodel" in model_files and "model/model.pkl" in model_files
    # the registry: versions, alias and stage decided by the processor, requested by the token's principal
    versions = q(settings, "SELECT model, version, stage, aliases, run_id, artifact FROM model_versions "
                           "ORDER BY model")
    assert versions == [
        {"model": "credit-gw", "version": 1, "stage": "staging", "aliases": ["champion"], "run_id": rid3,
         "artifact": "model"},
        {"model": "notes-gw", "version": 1, "stage": "development", "aliases": [], "run_id": rid,
         "artifact": "notes.txt"}]
    requests = q(settings, "SELECT action, status, requested_by FROM requests ORDER BY requested_at")
    assert requests == [{"action": "SET_ALIAS", "status": "APPROVED", "requested_by": "ml-team"},
                        {"action": "PROMOTE", "status": "APPROVED", "requested_by": "ml-team"}]
    # the audit trail: every event the client caused is stamped with the token's principal
    actors = q(settings, "SELECT DISTINCT actor FROM audit_log WHERE event_type IN ('ExperimentCreated', "
                         "'RunStarted', 'RunEnded', 'MetricsLogged', 'ParamsLogged', 'TagsSet', 'ArtifactLogged', "
                         "'ModelVersionRegistered', 'ChangeRequested', 'ModelAnnotated')")
    assert actors == [{"actor": "ml-team"}]
    assert q(settings, "SELECT count(*) AS n FROM dead_letters") == [{"n": 0}]

    # a policy refuses production: the client sees the processor's reason as an MLflow error.
    # Basic auth (MLFLOW_TRACKING_USERNAME / PASSWORD): the password is the token.
    run_cli(env, "policy", "set", "--gate", "PROMOTE:production=training_accuracy_score >= 2")
    (tmp_path / "refused.json").write_text(json.dumps(out))
    refused = drive(mlflow_python, server.url, {"MLFLOW_TRACKING_USERNAME": "anyone", "MLFLOW_TRACKING_PASSWORD": writer},
                    tmp_path / "refused.json", "refused", tmp_path)
    assert "training_accuracy_score" in refused["refused"]
    assert "not supported by modelog's MLflow gateway" in refused["unmapped"]
    last = q(settings, "SELECT action, stage, status, requested_by FROM requests ORDER BY requested_at DESC LIMIT 1")
    assert last == [{"action": "PROMOTE", "stage": "production", "status": "REJECTED", "requested_by": "ml-team"}]
