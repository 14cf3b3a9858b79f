"""modelog.autolog() with the real scikit-learn on tiny data it makes itself, the real broker and processor:
a pipeline, a grid search and an MLP (per-iteration loss) each leave one run -- params, metrics, the
training data as a dataset version, the pickled model stored and downloadable -- and inner fits none."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import modelog
from modelog.sdk.artifacts import download
from modelog.consumers.query import sql_arrow

pytestmark = [pytest.mark.broker, pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]


def q(settings, query: str, params: list | None = None) -> list[dict]:
    return sql_arrow(query, settings, params=params).to_pylist()


def test_autolog_records_each_outermost_fit_with_params_metrics_data_and_model(settings, processor, client, tmp_path):
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(n_samples=120, n_features=4, random_state=0)
    on = modelog.autolog(client=client)  # every supported framework installed: the test extras have several
    assert on[0] == "sklearn" and {"xgboost", "lightgbm"} <= set(on)
    try:
        pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=0.5, max_iter=200))]).fit(X, y)
        search = GridSearchCV(LogisticRegression(max_iter=200), {"C": [0.1, 1.0]}, cv=3).fit(X, y)
        with client.start_run("autolog", name="mlp") as outer:
            mlp = MLPClassifier(hidden_layer_sizes=(5,), max_iter=12, random_state=0).fit(X, y)
    finally:
        assert modelog.autolog(disable=True) == on
    LogisticRegression(max_iter=200).fit(X, y)  # after disable: no run
    client.wait_projected(timeout=60)

    runs = {r["name"]: r for r in q(settings, "SELECT run_id, name, experiment, status FROM runs")}
    assert set(runs) == {"Pipeline", "GridSearchCV", "mlp"}  # the 8 fits inside the search and the steps: none
    assert {r["status"] for r in runs.values()} == {"FINISHED"}
    assert (runs["Pipeline"]["experiment"], runs["mlp"]["run_id"]) == ("default", outer.id)

    def params(name):
        return {r["key"]: r["value"] for r in q(settings, "SELECT key, value FROM params WHERE run_id = ?",
                                                [runs[name]["run_id"]])}

    def metrics(name):
        return {r["key"]: r["value"] for r in q(settings, "SELECT key, value FROM latest_metrics WHERE run_id = ?",
                                                [runs[name]["run_id"]])}

    assert params("Pipeline")["clf__C"] == "0.5" and params("Pipeline")["clf"] == "LogisticRegression"
    assert metrics("Pipeline")["training_score"] == pipe.score(X, y)
    assert params("GridSearchCV")["best.C"] == str(search.best_params_["C"])
    assert metrics("GridSearchCV")["best_cv_score"] == search.best_score_
    losses = q(settings, "SELECT step, value FROM metrics WHERE run_id = ? AND key = 'training_loss' ORDER BY step",
               [outer.id])
    assert [(r["step"], r["value"]) for r in losses] == list(enumerate(mlp.loss_curve_))
    assert len(losses) == 12

    # the same training data is one dataset version, consumed by every run
    edges = q(settings, "SELECT src, dst, role FROM lineage_edges WHERE relation = 'consumed' ORDER BY dst")
    assert {e["dst"] for e in edges} == {f"run:{r['run_id']}" for r in runs.values()}
    assert len({e["src"] for e in edges}) == 1 and edges[0]["src"].startswith("dataset:training-data@")
    assert {e["role"] for e in edges} == {"train"}

    # the model is stored: download it (checked) and it predicts as the fitted one
    tags = {r["key"]: r["value"] for r in q(settings, "SELECT key, value FROM tags WHERE run_id = ?",
                                            [runs["Pipeline"]["run_id"]])}
    assert tags["modelog.autolog"] == "sklearn"
    art = q(settings, "SELECT path, content_address FROM artifacts WHERE run_id = ?", [runs["Pipeline"]["run_id"]])
    assert [a["path"] for a in art] == ["model/model.pkl"] and art[0]["content_address"]
    path = download(runs["Pipeline"]["run_id"], "model/model.pkl", str(tmp_path / "m.pkl"), settings)
    again = pickle.loads(path.read_bytes())
    assert np.array_equal(again.predict(X), pipe.predict(X))


def test_a_failing_fit_ends_its_run_failed_and_raises(settings, processor, client):
    from sklearn.linear_model import LogisticRegression

    modelog.autolog(client=client)
    try:
        with pytest.raises(ValueError):
            LogisticRegression().fit(np.array([[1.0], [2.0]]), np.array([0, 0]))  # one class: refused
    finally:
        modelog.autolog(disable=True)
    client.wait_projected(timeout=60)
    rows = q(settings, "SELECT name, status, error FROM runs")
    assert len(rows) == 1 and rows[0]["status"] == "FAILED" and rows[0]["error"].startswith("ValueError")
