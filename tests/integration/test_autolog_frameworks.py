"""modelog.autolog() for XGBoost, LightGBM and Keras 3 (JAX backend, on the CPU), each with the real library
on tiny data it makes itself, against the real broker and processor: params, the per-iteration / per-epoch
metric history with its steps, the training data as a dataset version and the model stored as an artifact
that loads back and predicts as the trained one.

(PyTorch Lightning and the Hugging Face Trainer: test_autolog_torch.py, in a venv of their own.)"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is imported: the light backend of the test extras

import modelog  # noqa: E402
from modelog.consumers.query import sql_arrow  # noqa: E402
from modelog.sdk.artifacts import download  # noqa: E402

pytestmark = pytest.mark.broker


def q(settings, query: str, params: list | None = None) -> list[dict]:
    return sql_arrow(query, settings, params=params).to_pylist()


def tiny_data(n: int = 160):
    from sklearn.datasets import make_classification

    return make_classification(n_samples=n, n_features=5, n_informative=3, random_state=0)


def runs_by_name(settings) -> dict[str, dict]:
    return {r["name"]: r for r in q(settings, "SELECT run_id, name, experiment, status FROM runs")}


def params(settings, run_id: str) -> dict[str, str]:
    return {r["key"]: r["value"] for r in q(settings, "SELECT key, value FROM params WHERE run_id = ?", [run_id])}


def history(settings, run_id: str, key: str) -> list[tuple[int, float]]:
    rows = q(settings, "SELECT step, value FROM metrics WHERE run_id = ? AND key = ? ORDER BY step", [run_id, key])
    return [(r["step"], r["value"]) for r in rows]


def tags(settings, run_id: str) -> dict[str, str]:
    return {r["key"]: r["value"] for r in q(settings, "SELECT key, value FROM tags WHERE run_id = ?", [run_id])}


def artifacts(settings, run_id: str) -> list[str]:
    rows = q(settings, "SELECT path, content_address FROM artifacts WHERE run_id = ? ORDER BY path", [run_id])
    assert all(r["content_address"] for r in rows)  # stored, not only referenced
    return [r["path"] for r in rows]


def consumed(settings, run_id: str) -> list[str]:
    rows = q(settings, "SELECT src, role FROM lineage_edges WHERE relation = 'consumed' AND dst = ?", [f"run:{run_id}"])
    assert {r["role"] for r in rows} <= {"train"}
    return [r["src"] for r in rows]


def test_xgboost_train_and_the_sklearn_api_log_rounds_params_data_and_model(settings, processor, client, tmp_path):
    import xgboost as xgb

    X, y = tiny_data()
    from sklearn.model_selection import GridSearchCV

    assert modelog.autolog(client=client, frameworks=["xgboost", "sklearn"]) == ["xgboost", "sklearn"]
    try:
        dtrain = xgb.DMatrix(X, label=y)
        rounds: dict = {}
        booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "eta": 0.3}, dtrain, num_boost_round=6,
                            evals=[(dtrain, "train")], evals_result=rounds, verbose_eval=False)
        clf = xgb.XGBClassifier(n_estimators=5, max_depth=3).fit(X, y, eval_set=[(X, y)], verbose=False)
        GridSearchCV(xgb.XGBClassifier(n_estimators=2), {"max_depth": [1, 2]}, cv=2).fit(X, y)
    finally:
        modelog.autolog(client=client, frameworks=["xgboost", "sklearn"], disable=True)
    xgb.XGBClassifier(n_estimators=2).fit(X, y)  # after disable: no run
    client.wait_projected(timeout=60)

    runs = runs_by_name(settings)
    # the xgboost.train inside fit is part of fit's run; the search's 5 XGBClassifier fits, of the search's
    assert len(q(settings, "SELECT run_id FROM runs")) == 3
    assert set(runs) == {"xgboost.train", "XGBClassifier", "GridSearchCV"}
    assert {r["status"] for r in runs.values()} == {"FINISHED"}
    native, sk = runs["xgboost.train"]["run_id"], runs["XGBClassifier"]["run_id"]

    p = params(settings, native)
    assert (p["max_depth"], p["eta"], p["num_boost_round"], p["objective"]) == ("2", "0.3", "6", "binary:logistic")
    assert history(settings, native, "train-logloss") == list(enumerate(rounds["train"]["logloss"]))
    assert tags(settings, native)["modelog.autolog"] == "xgboost"
    assert params(settings, sk)["n_estimators"] == "5" and params(settings, sk)["max_depth"] == "3"
    assert history(settings, sk, "validation_0-logloss") == list(enumerate(clf.evals_result()["validation_0"]["logloss"]))
    assert len(history(settings, sk, "validation_0-logloss")) == 5

    assert all(consumed(settings, rid)[0].startswith("dataset:training-data@") for rid in (native, sk))
    assert artifacts(settings, native) == ["model/model.json"] == artifacts(settings, sk)
    again = xgb.Booster(model_file=str(download(native, "model/model.json", str(tmp_path / "b.json"), settings)))
    assert np.array_equal(again.predict(dtrain), booster.predict(dtrain))
    loaded = xgb.XGBClassifier()
    loaded.load_model(str(download(sk, "model/model.json", str(tmp_path / "c.json"), settings)))
    assert np.array_equal(loaded.predict(X), clf.predict(X))


def test_lightgbm_train_and_the_sklearn_api_log_iterations_params_data_and_model(settings, processor, client,
                                                                                   tmp_path):
    import lightgbm as lgb

    X, y = tiny_data()
    assert modelog.autolog(client=client, frameworks=["lightgbm"]) == ["lightgbm"]
    try:
        train_set = lgb.Dataset(X, label=y)
        rounds: dict = {}
        booster = lgb.train({"objective": "binary", "num_leaves": 4, "learning_rate": 0.2, "verbose": -1}, train_set,
                            num_boost_round=5, valid_sets=[train_set], valid_names=["train"],
                            callbacks=[lgb.record_evaluation(rounds)])
        clf = lgb.LGBMClassifier(n_estimators=4, num_leaves=5, verbose=-1).fit(X, y, eval_X=(X,), eval_y=(y,))
    finally:
        modelog.autolog(client=client, frameworks=["lightgbm"], disable=True)
    client.wait_projected(timeout=60)

    runs = runs_by_name(settings)
    assert set(runs) == {"lightgbm.train", "LGBMClassifier"}
    native, sk = runs["lightgbm.train"]["run_id"], runs["LGBMClassifier"]["run_id"]
    p = params(settings, native)
    assert (p["num_leaves"], p["learning_rate"], p["num_boost_round"]) == ("4", "0.2", "5")
    assert history(settings, native, "train-binary_logloss") == list(enumerate(rounds["train"]["binary_logloss"]))
    assert len(rounds["train"]["binary_logloss"]) == 5
    [(data, metrics)] = clf.evals_result_.items()
    assert history(settings, sk, f"{data}-binary_logloss") == list(enumerate(metrics["binary_logloss"]))
    assert params(settings, sk)["n_estimators"] == "4"
    assert tags(settings, sk) == {"modelog.autolog": "lightgbm", "estimator": "LGBMClassifier"}

    # both trained on the same X and y: LightGBM's Dataset held them as given, so one dataset version
    assert consumed(settings, native) == consumed(settings, sk) and len(consumed(settings, sk)) == 1
    assert artifacts(settings, native) == ["model/model.txt"] == artifacts(settings, sk)
    again = lgb.Booster(model_file=str(download(native, "model/model.txt", str(tmp_path / "m.txt"), settings)))
    assert np.allclose(again.predict(X), booster.predict(X), rtol=0, atol=1e-12)


# Keras 3.15's Variable.numpy() calls np.array(variable), which numpy 2.4 warns about (not ours)
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_keras_fit_logs_each_epoch_params_data_and_a_model_that_loads(settings, processor, client, tmp_path):
    import keras

    assert keras.backend.backend() == "jax"
    X, y = tiny_data(96)
    X = X.astype("float32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="binary_crossentropy",
                  metrics=["accuracy"])
    assert modelog.autolog(client=client, frameworks=["keras"]) == ["keras"]
    try:
        with client.start_run("keras-autolog", name="mine") as run:
            fitted = model.fit(X, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0)
    finally:
        modelog.autolog(client=client, frameworks=["keras"], disable=True)
    client.wait_projected(timeout=60)

    assert list(runs_by_name(settings)) == ["mine"]  # logged into the active run
    p = params(settings, run.id)
    assert (p["epochs"], p["batch_size"], p["optimizer"], p["loss"]) == ("3", "16", "Adam", "binary_crossentropy")
    assert float(p["optimizer.learning_rate"]) == pytest.approx(0.01) and int(p["weights"]) == model.count_params()
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        points = history(settings, run.id, key)
        assert [s for s, _ in points] == [0, 1, 2]
        assert [v for _, v in points] == pytest.approx(fitted.history[key], rel=1e-6)
    assert tags(settings, run.id) == {"modelog.autolog": "keras", "estimator": "Sequential"}
    [src] = consumed(settings, run.id)
    version = q(settings, "SELECT row_count FROM dataset_versions WHERE node = ?", [src])
    assert version == [{"row_count": 96}]
    assert artifacts(settings, run.id) == ["model/model.keras"]
    path = download(run.id, "model/model.keras", str(tmp_path / "model.keras"), settings)
    again = keras.models.load_model(str(path))
    assert np.allclose(again.predict(X, verbose=0), model.predict(X, verbose=0))
