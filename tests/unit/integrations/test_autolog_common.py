"""What the autologging integrations share, without a broker: params and metrics as the SDK takes them,
the training frame, only the outermost training call getting a run, the choice of frameworks, and
``modelog`` importing without any framework."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import modelog
from modelog.integrations import FRAMEWORKS, _autolog
from modelog.wire.errors import ValidationError


def test_params_are_flat_scalars_or_text_and_names_keep_the_rule():
    p = _autolog.params_of({"eta": np.float32(0.5), "depth": 3, "tree": None, "opt": {"lr": 0.1, "betas": (0.9, 1)},
                            "bad name?": "x", "flag": True})
    assert p == {"eta": 0.5, "depth": 3, "opt.lr": 0.1, "opt.betas": "(0.9, 1)", "bad name_": "x", "flag": True}
    assert _autolog.params_of({"tree": None}, skip_none=False) == {"tree": None}
    assert len(_autolog.param_text("x" * 900)) == _autolog.MAX_PARAM_CHARS


def test_metrics_keep_numbers_only():
    m = _autolog.numeric({"loss": np.float32(0.25), "acc": 1, "name": "x", "vec": np.array([1.0, 2.0]),
                          "flag": True, "none": None, "train/loss@": 2.0})
    assert m == {"loss": 0.25, "acc": 1.0, "train/loss_": 2.0}


def test_the_training_frame_flattens_images_and_names_targets():
    df = _autolog.training_frame(np.zeros((3, 2, 2)), np.eye(3)[:, :2])
    assert list(df.columns) == ["x0", "x1", "x2", "x3", "target0", "target1"] and len(df) == 3


class FakeRun:
    def __init__(self):
        self.ended, self.tags = [], {}

    def set_tags(self, tags):
        self.tags.update(tags)

    def end(self, status="FINISHED", error=None):
        self.ended.append((status, error))


class FakeClient:
    def __init__(self):
        self.runs = []

    def start_run(self, experiment, name):
        self.runs.append((experiment, name, FakeRun()))
        return self.runs[-1][2]


def test_only_the_outermost_training_call_gets_a_run_and_a_failure_ends_it_failed():
    client, options = FakeClient(), _autolog.Options()
    options.set(client, experiment="exp")
    with _autolog.training("xgboost", "outer", options, {"estimator": "X"}) as run:
        assert _autolog.inside_training()
        with _autolog.training("sklearn", "inner", options) as inner:
            assert inner is None
    assert not _autolog.inside_training()
    assert [(e, n) for e, n, _ in client.runs] == [("exp", "outer")]
    assert run.tags == {"modelog.autolog": "xgboost", "estimator": "X"} and run.ended == [("FINISHED", None)]
    with pytest.raises(ZeroDivisionError):
        with _autolog.training("xgboost", "boom", options):
            1 / 0
    assert client.runs[-1][2].ended == [("FAILED", "ZeroDivisionError: division by zero")]
    assert not _autolog.inside_training()


def test_no_run_means_training_goes_on_unlogged(caplog):
    class Broken:
        def start_run(self, experiment, name):
            raise RuntimeError("no broker")

    options = _autolog.Options()
    options.set(Broken())
    with _autolog.training("keras", "m", options) as run:
        assert run is None
    assert "no broker" in caplog.text


def test_autolog_refuses_unknown_frameworks_by_name():
    with pytest.raises(ValidationError) as err:
        modelog.autolog(frameworks=["scikit"])
    assert err.value.field == "frameworks" and "sklearn" in str(err.value)
    assert list(FRAMEWORKS) == ["sklearn", "xgboost", "lightgbm", "keras", "lightning", "transformers"]


def test_autolog_turns_on_only_the_frameworks_asked_for():
    assert modelog.autolog(frameworks=["sklearn"]) == ["sklearn"]
    try:
        from modelog.integrations import sklearn as sk

        assert sk.enabled()
    finally:
        assert modelog.autolog(frameworks=["sklearn"], disable=True) == ["sklearn"]
    assert not sk.enabled()


def test_modelog_imports_without_any_framework():
    blocked = ", ".join(repr(f) for f in FRAMEWORKS)  # None in sys.modules: not importable, find_spec None
    code = f"import sys\nfor name in ({blocked}): sys.modules[name] = None\nimport modelog\nprint(modelog.autolog())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_disable_restores_what_was_on_without_importing_the_rest():
    code = ("import sys, modelog\non = modelog.autolog(frameworks=['lightgbm'])\n"
            "print(on, modelog.autolog(disable=True), 'xgboost' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['lightgbm'] ['lightgbm'] False"
