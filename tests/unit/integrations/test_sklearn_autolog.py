"""The pure pieces of scikit-learn autologging, without a broker: params as text, the training frame, and
that enable/disable wrap and restore every fit (GridSearchCV's is BaseSearchCV's)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from modelog.integrations import sklearn as sk


def test_params_are_flat_text_and_nested_estimators_are_named():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    p = sk.flat_params(Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=0.25))]))
    assert p["clf__C"] == "0.25" and p["clf"] == "LogisticRegression" and p["scale__with_mean"] == "True"
    assert p["steps"].startswith("[('scale', StandardScaler())") and all(isinstance(v, str) for v in p.values())


def test_the_training_frame_has_text_columns_and_the_target():
    df = sk.training_frame(np.arange(6.0).reshape(3, 2), np.array([0, 1, 0]))
    assert list(df.columns) == ["x0", "x1", "target"] and df["target"].tolist() == [0, 1, 0]
    named = sk.training_frame(pd.DataFrame({1: [1.0], "b": [2.0]}), None)
    assert list(named.columns) == ["1", "b"]


def test_enable_wraps_every_fit_once_and_disable_restores_them():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.model_selection._search import BaseSearchCV

    before = (LogisticRegression.fit, BaseSearchCV.fit)
    sk.enable()
    sk.enable()  # idempotent
    try:
        assert getattr(LogisticRegression.fit, "__modelog_autolog__", False)
        assert getattr(GridSearchCV.fit, "__modelog_autolog__", False) and "fit" not in GridSearchCV.__dict__
        assert LogisticRegression.fit.__wrapped__ is before[0]
    finally:
        sk.disable()
    assert (LogisticRegression.fit, BaseSearchCV.fit) == before and not sk.enabled()
