"""Drives the STOCK mlflow client (run in tests/.venv-mlflow, not this project's venv) against modelog's
MLflow gateway: MLFLOW_TRACKING_URI and MLFLOW_TRACKING_TOKEN (or _USERNAME/_PASSWORD) come from the
environment, exactly as a user's training script would get them. Asserts what the client reads back and
writes the ids it made to the JSON file named by argv[1], for the test to check modelog's views.

``phase``: argv[2] -- "main" (tracking, artifacts, autolog, registry) or "refused" (a stage transition
the policy refuses; an unmappable call).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

out_file, phase = Path(sys.argv[1]), sys.argv[2]
client = MlflowClient()
out: dict = {}


def expect_error(code: str, fn, *args, **kw) -> MlflowException:
    try:
        fn(*args, **kw)
    except MlflowException as exc:
        assert exc.error_code == code, (code, exc.error_code, exc.message)
        return exc
    raise AssertionError(f"{fn.__name__} did not fail with {code}")


def main() -> None:
    # experiments: create, get, get-by-name, search, already exists
    eid = mlflow.create_experiment("mlflow-gw")
    assert client.get_experiment(eid).name == "mlflow-gw"
    assert client.get_experiment_by_name("mlflow-gw").experiment_id == eid
    assert client.get_experiment_by_name("no-such-experiment") is None
    assert "mlflow-gw" in [e.name for e in client.search_experiments()]
    assert [e.name for e in client.search_experiments(filter_string="name = 'mlflow-gw'")] == ["mlflow-gw"]
    expect_error("RESOURCE_ALREADY_EXISTS", mlflow.create_experiment, "mlflow-gw")
    mlflow.set_experiment("mlflow-gw")
    out["experiment_id"] = eid

    # a run: params, metrics, tags, batch, artifacts
    work = Path(tempfile.mkdtemp())
    (work / "notes.txt").write_text("hello from mlflow\n")
    (work / "outputs").mkdir()
    (work / "outputs" / "a.csv").write_text("x,y\n1,2\n")
    (work / "outputs" / "sub").mkdir()
    (work / "outputs" / "sub" / "b.bin").write_bytes(os.urandom(70_000))
    with mlflow.start_run(run_name="first") as run:
        rid = run.info.run_id
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"depth": 6, "model": "gbt"})
        mlflow.log_metric("loss", 1.0, step=0)
        for step in range(1, 5):
            mlflow.log_metrics({"loss": 1.0 / (step + 1), "auc": 0.7 + 0.05 * step}, step=step)
        mlflow.set_tag("team", "risk")
        mlflow.set_tags({"phase": "dev"})
        now = int(time.time() * 1000)
        client.log_batch(rid, metrics=[Metric("acc", 0.91, now, 0)], params=[Param("batch", "32")],
                         tags=[RunTag("source", "batch")])
        mlflow.log_artifact(str(work / "notes.txt"))
        mlflow.log_artifacts(str(work / "outputs"), artifact_path="outputs")
    r = client.get_run(rid)
    assert r.info.status == "FINISHED" and r.info.run_name == "first" and r.info.experiment_id == eid, r.info
    assert r.data.params == {"lr": "0.01", "depth": "6", "model": "gbt", "batch": "32"}, r.data.params
    assert r.data.metrics["loss"] == 0.2 and abs(r.data.metrics["auc"] - 0.9) < 1e-9, r.data.metrics
    assert r.data.metrics["acc"] == 0.91
    assert r.data.tags["team"] == "risk" and r.data.tags["phase"] == "dev" and r.data.tags["source"] == "batch"
    history = client.get_metric_history(rid, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 1 / 3), (3, 0.25), (4, 0.2)], history
    # params are immutable, as in MLflow
    expect_error("INVALID_PARAMETER_VALUE", client.log_param, rid, "lr", "0.02")
    expect_error("RESOURCE_DOES_NOT_EXIST", client.get_run, "0" * 32)

    # artifacts: list and download through the proxy (bytes from modelog's store)
    assert sorted(f.path for f in client.list_artifacts(rid)) == ["notes.txt", "outputs"]
    assert sorted(f.path for f in client.list_artifacts(rid, "outputs")) == ["outputs/a.csv", "outputs/sub"]
    got = Path(mlflow.artifacts.download_artifacts(run_id=rid, artifact_path="notes.txt",
                                                   dst_path=str(work / "dl1")))
    assert got.read_text() == "hello from mlflow\n"
    got = Path(mlflow.artifacts.download_artifacts(run_id=rid, artifact_path="outputs", dst_path=str(work / "dl2")))
    assert (got / "a.csv").read_text() == "x,y\n1,2\n"
    assert (got / "sub" / "b.bin").read_bytes() == (work / "outputs" / "sub" / "b.bin").read_bytes()
    out["run_id"] = rid

    # a second run, then search_runs with MLflow filter strings and order_by
    with mlflow.start_run(run_name="second") as run2:
        mlflow.log_params({"model": "rf", "lr": "0.1"})
        mlflow.log_metric("auc", 0.75)
        mlflow.set_tag("team", "ops")
    rid2 = run2.info.run_id
    found = mlflow.search_runs(experiment_ids=[eid], filter_string="metrics.auc > 0.8 and params.model = 'gbt'",
                               output_format="list")
    assert [x.info.run_id for x in found] == [rid], found
    found = client.search_runs([eid], order_by=["metrics.auc DESC"])
    assert [x.info.run_id for x in found] == [rid, rid2]
    found = client.search_runs([eid], order_by=["metrics.auc ASC"])
    assert [x.info.run_id for x in found] == [rid2, rid]
    found = client.search_runs([eid], filter_string="tags.team = 'ops' and attributes.status = 'FINISHED'")
    assert [x.info.run_id for x in found] == [rid2]
    found = client.search_runs([eid], filter_string="attributes.run_name LIKE 'fir%'")
    assert [x.info.run_id for x in found] == [rid]
    found = client.search_runs([eid], filter_string=f"attributes.start_time >= {r.info.start_time}",
                               order_by=["attributes.start_time ASC"])
    assert [x.info.run_id for x in found] == [rid, rid2]
    page = client.search_runs([eid], max_results=1, order_by=["attributes.run_name"])
    assert [x.info.run_id for x in page] == [rid] and page.token
    page2 = client.search_runs([eid], max_results=1, order_by=["attributes.run_name"], page_token=page.token)
    assert [x.info.run_id for x in page2] == [rid2]
    expect_error("INVALID_PARAMETER_VALUE", client.search_runs, [eid], filter_string="metrics.auc > 'high'")
    out["run_id2"] = rid2

    # autologging: scikit-learn
    from sklearn.linear_model import LogisticRegression

    mlflow.sklearn.autolog()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] + 0.1 * rng.normal(size=60) > 0).astype(int)
    with mlflow.start_run(run_name="autolog") as run3:
        LogisticRegression(C=0.5, max_iter=200).fit(X, y)
    rid3 = run3.info.run_id
    r3 = client.get_run(rid3)
    assert r3.data.params["C"] == "0.5" and r3.data.params["max_iter"] == "200", r3.data.params
    assert 0.8 <= r3.data.metrics["training_accuracy_score"] <= 1.0, r3.data.metrics
    assert r3.data.tags["estimator_name"] == "LogisticRegression", r3.data.tags
    models = client.search_logged_models(experiment_ids=[eid])
    assert [m.source_run_id for m in models] == [rid3], models
    model_id = models[0].model_id
    assert "MLmodel" in [f.path.rsplit("/", 1)[-1] for f in client.list_artifacts(rid3, "model")]
    loaded = mlflow.sklearn.load_model(f"models:/{model_id}")
    assert (loaded.predict(X) == LogisticRegression(C=0.5, max_iter=200).fit(X, y).predict(X)).all()
    mlflow.sklearn.autolog(disable=True)
    out["run_id3"] = rid3

    # the registry: register_model (from a logged model), create_registered_model, create_model_version,
    # aliases, stages, search
    mv = mlflow.register_model(f"models:/{model_id}", "credit-gw")
    assert mv.version == "1" and mv.run_id == rid3, mv
    client.create_registered_model("notes-gw", description="a text file")
    mv2 = client.create_model_version("notes-gw", source=f"runs:/{rid}/notes.txt", run_id=rid)
    assert mv2.version == "1" and mv2.run_id == rid
    assert client.get_registered_model("notes-gw").description == "a text file"
    client.set_registered_model_alias("credit-gw", "champion", "1")
    by_alias = client.get_model_version_by_alias("credit-gw", "champion")
    assert by_alias.version == "1" and by_alias.run_id == rid3 and "champion" in by_alias.aliases
    staged = client.transition_model_version_stage("credit-gw", "1", "Staging")
    assert staged.current_stage == "Staging", staged
    assert client.get_model_version("credit-gw", "1").current_stage == "Staging"
    found = client.search_model_versions("name = 'credit-gw'")
    assert [(v.name, v.version, v.current_stage) for v in found] == [("credit-gw", "1", "Staging")], found
    found = client.search_model_versions(f"run_id = '{rid}'")
    assert [(v.name, v.version) for v in found] == [("notes-gw", "1")], found
    rm = client.get_registered_model("credit-gw")
    assert rm.aliases == {"champion": "1"} and [v.current_stage for v in rm.latest_versions] == ["Staging"], rm
    assert [m.name for m in client.search_registered_models(filter_string="name LIKE 'credit%'")] == ["credit-gw"]
    expect_error("RESOURCE_DOES_NOT_EXIST", client.get_model_version, "credit-gw", "7")
    got = mlflow.sklearn.load_model("models:/credit-gw@champion")
    assert (got.predict(X) == loaded.predict(X)).all()
    out["model_id"] = model_id


def refused() -> None:
    # the policy (set by the test) refuses production unless training_accuracy_score >= 2: the client sees why
    exc = expect_error("PERMISSION_DENIED", client.transition_model_version_stage, "credit-gw", "1", "Production")
    assert "rejected" in exc.message, exc.message
    out["refused"] = exc.message
    assert client.get_model_version("credit-gw", "1").current_stage == "Staging"
    # what modelog cannot map is an explicit MLflow error
    exc = expect_error("NOT_IMPLEMENTED", client.delete_run, json.loads(out_file.read_text())["run_id"])
    out["unmapped"] = exc.message


main() if phase == "main" else refused()
out_file.write_text(json.dumps(out))
print("ok", phase)
