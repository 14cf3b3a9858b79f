"""modelog import mlflow against the real broker and processor, from what the real mlflow package wrote: a
file store (``mlruns``) and a running ``mlflow server`` (REST API, artifacts proxied). The views hold the runs
with their MLflow ids, users, times, params, full metric histories, stored artifacts and model versions; a
second import skips everything (idempotent), also across the two kinds of source.

mlflow runs in its own venv (tests/.venv-mlflow, the ``mlflow_python`` fixture of test_mlflow_gateway.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from conftest import run_cli
from harness import log_ends, published_since
from test_mlflow_gateway import mlflow_python  # noqa: F401  (the fixture)
from waiting import wait_until
from modelog.consumers.query import sql_arrow
from modelog.sdk.artifacts import download, load_model_path
from modelog.wire.home import free_port

pytestmark = pytest.mark.broker

WRITE = Path(__file__).resolve().parent / "mlflow_client" / "write_store.py"
T0 = 1_700_000_000_000  # ms, as write_store.py


def q(settings, query, params=None):
    return sql_arrow(query, settings, params=params).to_pylist()


def write(python: Path, target: str, tmp: Path) -> dict:
    out = tmp / "written.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELOG_", "MLFLOW_"))}
    env.update(HOME=str(tmp), GIT_PYTHON_REFRESH="quiet", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
               MLFLOW_ALLOW_FILE_STORE="true")  # mlflow 3 keeps the file store in "maintenance mode"
    done = subprocess.run([str(python), str(WRITE), target, str(out)], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp)
    assert done.returncode == 0, f"writing with mlflow failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return json.loads(out.read_text())


def projected(settings, runs: int, versions: int) -> None:
    wait_until(lambda: q(settings, "SELECT count(*) AS n FROM runs WHERE status <> 'RUNNING'") == [{"n": runs}]
               and q(settings, "SELECT count(*) AS n FROM registered_versions") == [{"n": versions}],
               90, f"{runs} imported runs and {versions} versions projected")


def check_imported(settings, ids: dict, source: str, tmp: Path) -> None:
    alice, bob = ids["alice"], ids["bob"]
    runs = q(settings, "SELECT run_id, experiment, name, status, actor, epoch_ms(start_time) AS start, "
                       "epoch_ms(end_time) AS end FROM runs ORDER BY start_time")
    assert runs == [
        {"run_id": alice, "experiment": "credit-risk", "name": "baseline", "status": "FINISHED", "actor": "alice",
         "start": T0, "end": T0 + 60_000},
        {"run_id": bob, "experiment": "credit-risk", "name": "deeper", "status": "FAILED", "actor": "bob",
         "start": T0 + 100_000, "end": T0 + 102_000},
        {"run_id": ids["carol"], "experiment": "other", "name": "solo", "status": "FINISHED", "actor": "carol",
         "start": T0 + 200_000, "end": T0 + 201_000}]
    assert q(settings, "SELECT key, value FROM params WHERE run_id = ? ORDER BY key", [alice]) == [
        {"key": "depth", "value": "6"}, {"key": "lr", "value": "0.01"}]
    tags = {r["key"]: r["value"] for r in q(settings, "SELECT key, value FROM tags WHERE run_id = ?", [alice])}
    assert tags["team"] == "risk" and tags["modelog.import"] == "mlflow" and tags["mlflow.run_id"] == alice
    assert tags["modelog.import.source"] == source
    # the full history, each point with its own step and timestamp
    loss = q(settings, "SELECT step, value, epoch_ms(timestamp) AS ms FROM metrics WHERE run_id = ? AND key = 'loss' "
                       "ORDER BY step", [alice])
    assert len(loss) == 30 and loss[0] == {"step": 0, "value": 1.0, "ms": T0}
    assert loss[29] == {"step": 290, "value": 1.0 / 30, "ms": T0 + 29_000}
    auc = q(settings, "SELECT step, isnan(value) AS nan FROM metrics WHERE run_id = ? AND key = 'val/auc'", [alice])
    assert auc == [{"step": 3, "nan": True}]
    # the audit trail keeps MLflow's users and times, marked as imported
    audit = q(settings, "SELECT actor, epoch_ms(occurred_at) AS ms, source_program FROM audit_log "
                        "WHERE event_type = 'RunStarted' AND entity_key = ?", [bob])
    assert audit == [{"actor": "bob", "ms": T0 + 100_000, "source_program": "modelog-import-mlflow"}]
    # the artifacts' bytes are in modelog's artifact store, checked on the way back
    arts = q(settings, "SELECT path, size_bytes, sha256, content_address FROM artifacts WHERE run_id = ? "
                       "ORDER BY path", [alice])
    model_bytes = bytes(range(256)) * 400
    assert [(a["path"], a["size_bytes"]) for a in arts] == [
        ("clf/MLmodel", 12), ("clf/model.bin", 1000), ("docs/notes.txt", 18), ("model.pkl", len(model_bytes))]
    assert arts[3]["sha256"] == hashlib.sha256(model_bytes).hexdigest() and all(a["content_address"] for a in arts)
    got = download(alice, "model.pkl", tmp / "back.pkl", settings)
    assert got.read_bytes() == model_bytes
    # the registry: every version, MLflow's numbers, alias kept as a tag (not applied: a governed change);
    # the version of the logged model names its files in the run, so it can be downloaded
    versions = q(settings, "SELECT model, version, run_id, artifact, description, tags FROM registered_versions "
                           "ORDER BY version")
    assert [(v["model"], v["version"], v["run_id"], v["artifact"], v["description"]) for v in versions] == [
        ("credit-model", 1, alice, "model.pkl", "first"), ("credit-model", 2, alice, "model.pkl", None),
        ("credit-model", 3, alice, "clf", None)]
    folder = load_model_path("credit-model", settings, version=3, dest=tmp / "clf")
    assert (folder / "model.bin").read_bytes() == b"\x00\x01" * 500
    v2 = dict(versions[1]["tags"])
    assert v2["mlflow.version"] == "2" and v2["mlflow.aliases"] == "champion" and v2["approved"] == "yes"
    assert q(settings, "SELECT description FROM experiments WHERE experiment = 'credit-risk'") == [
        {"description": "scoring applications"}]
    assert q(settings, "SELECT count(*) AS n FROM dead_letters") == [{"n": 0}]


def counts(settings) -> list:
    return [q(settings, f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in
            ("runs", "metrics", "params", "artifacts", "registered_versions", "audit_log")]


def test_import_an_mlruns_directory_twice_imports_once(mlflow_python, env, settings, processor, tmp_path):
    mlruns = tmp_path / "mlruns"
    ids = write(mlflow_python, str(mlruns), tmp_path)
    first = log_ends(settings)
    out = run_cli(env, "import", "mlflow", "--tracking-uri", str(mlruns))
    assert ("imported 2 experiment(s), 3 run(s), 3 param(s), 33 metric point(s), 4 artifact(s) (103,430 bytes "
            "stored), 3 model version(s); skipped 0") in out.stdout, out.stdout + out.stderr
    projected(settings, 3, 3)
    check_imported(settings, ids, mlruns.resolve().as_uri(), tmp_path)
    assert list(published_since(settings, first).values()).count("RunStarted") == 3  # what the check below relies on

    before, ends = counts(settings), log_ends(settings)
    again = run_cli(env, "import", "mlflow", "--tracking-uri", mlruns.resolve().as_uri())
    assert "imported 0 experiment(s), 0 run(s)" in again.stdout and "skipped 6" in again.stdout
    assert f"skipped run credit-risk/baseline ({ids['alice']}): already imported" in again.stdout
    assert "skipped model version credit-model/3: already imported" in again.stdout
    # the import flushed before it exited: the log says it published nothing (the processor's own
    # tamper-evidence checkpoints may come meanwhile)
    assert set(published_since(settings, ends).values()) <= {"LogCheckpoint"}
    assert counts(settings) == before

    only = run_cli(env, "import", "mlflow", "--tracking-uri", str(mlruns), "--experiment", "nope", check=False)
    assert only.returncode == 1 and "no MLflow experiment named 'nope'" in only.stderr


@pytest.fixture
def mlflow_server(mlflow_python, tmp_path):
    """A real ``mlflow server`` (SQLite backend, artifacts proxied to a directory) on a free port."""
    port = free_port()
    home = tmp_path / "mlflow-server"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELOG_", "MLFLOW_"))}
    env.update(HOME=str(home), GIT_PYTHON_REFRESH="quiet")
    with open(home / "server.log", "wb") as log:
        proc = subprocess.Popen([str(mlflow_python.parent / "mlflow"), "server", "--host", "127.0.0.1", "--port",
                                 str(port), "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
                                 "--artifacts-destination", str(home / "artifacts"), "--workers", "1"],
                                env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (home / "server.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    try:
        wait_until(up, 180, "mlflow server answers /health")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_import_an_mlflow_server_through_its_rest_api(mlflow_python, mlflow_server, env, settings, processor,
                                                      tmp_path):
    ids = write(mlflow_python, mlflow_server, tmp_path)
    out = run_cli(env, "import", "mlflow", "--tracking-uri", mlflow_server, "--experiment", "credit-risk",
                  "--experiment", "other")
    assert ("imported 2 experiment(s), 3 run(s), 3 param(s), 33 metric point(s), 4 artifact(s) (103,430 bytes "
            "stored), 3 model version(s); skipped 0") in out.stdout, out.stdout + out.stderr
    projected(settings, 3, 3)
    check_imported(settings, ids, mlflow_server, tmp_path)
    uri = q(settings, "SELECT uri FROM artifacts WHERE run_id = ? AND path = 'model.pkl'", [ids["alice"]])[0]["uri"]
    assert uri.startswith("mlflow-artifacts:/") and uri.endswith(f"/{ids['alice']}/artifacts/model.pkl")

    before, ends = counts(settings), log_ends(settings)
    again = run_cli(env, "import", "mlflow", "--tracking-uri", mlflow_server)
    assert "imported 0 experiment(s), 0 run(s)" in again.stdout and "skipped 6" in again.stdout, again.stdout
    assert set(published_since(settings, ends).values()) <= {"LogCheckpoint"}
    assert counts(settings) == before
