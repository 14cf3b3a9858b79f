"""Autologging for scikit-learn: every ``fit`` of an estimator, pipeline or search becomes a run's record.

``enable(client=None, log_models=True, log_datasets=True)`` wraps ``fit`` of every scikit-learn estimator
class; ``disable()`` restores them. Only the outermost ``fit`` logs (a Pipeline's steps or a search's
candidates fit inside it). For that fit:

* the run: the active run if there is one, else a new run in the experiment ``autolog_experiment``
  (default ``default``) named after the estimator class, ended when ``fit`` returns (FAILED with the
  error if it raises; the error is raised again);
* params: ``get_params(deep=True)``, flattened, each value as text (estimators by class name);
  a search's ``best_params_`` as ``best.<name>`` too;
* metrics: ``training_score`` (``score(X, y)`` on the training data, when ``y`` is given), a search's
  ``best_cv_score``, and the per-iteration ``training_loss`` of estimators that keep a ``loss_curve_``
  (MLP) -- one point per iteration, with its step;
* the training data as a version of the dataset ``training-data`` (its content hash of X and y: the same
  data is the same version, so the runs trained on it are found from it), consumed with role ``train``;
* the fitted model, pickled, as the artifact ``model/model.pkl`` (stored in the artifact store; skipped
  with a warning when no store is configured), and the tag ``modelog.autolog = sklearn``.

Logging never breaks training: a failure to log is a warning; the fitted estimator is returned as usual.
"""

from __future__ import annotations

import functools
import logging
import pickle
import tempfile
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("modelog.autolog")

FLAVOR = "sklearn"
MAX_PARAM_CHARS = 500
_state = threading.local()  # depth of fit calls in this thread
_patched: dict[type, Any] = {}  # class -> its own original fit
_config: dict[str, Any] = {}


def enable(client=None, *, log_models: bool = True, log_datasets: bool = True,
           experiment: str = "default") -> None:
    """Wrap ``fit`` of every scikit-learn estimator class (idempotent). ``client``: the SDK client to log
    through (default: the process's default client, as ``modelog.start_run`` uses)."""
    from sklearn.utils import all_estimators

    _config.update(client=client, log_models=log_models, log_datasets=log_datasets, experiment=experiment)
    classes = {cls for _, cls in all_estimators()}
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    from sklearn.pipeline import FeatureUnion, Pipeline

    classes |= {Pipeline, FeatureUnion, GridSearchCV, RandomizedSearchCV}
    owners = set()  # the class each fit is defined on (GridSearchCV's is BaseSearchCV's)
    for cls in classes:
        owner = next((k for k in cls.__mro__ if "fit" in k.__dict__), None)
        if owner is not None and owner.__module__.startswith("sklearn"):
            owners.add(owner)
    for owner in owners:
        original = owner.__dict__["fit"]
        if owner in _patched or getattr(original, "__modelog_autolog__", False):
            continue
        _patched[owner] = original
        owner.fit = _wrap(original)


def disable() -> None:
    """Restore every wrapped ``fit``."""
    for cls, original in _patched.items():
        cls.fit = original
    _patched.clear()
    _config.clear()  # drop the client reference


def enabled() -> bool:
    return bool(_patched)


def _wrap(original):
    @functools.wraps(original)
    def fit(self, *args, **kwargs):  # signatures differ (LabelEncoder.fit(y)): pass everything through
        depth = getattr(_state, "depth", 0)
        if depth:  # inside another estimator's fit: only the outermost one logs
            return original(self, *args, **kwargs)
        _state.depth = 1
        try:
            return _logged_fit(original, self, args, kwargs)
        finally:
            _state.depth = 0

    fit.__modelog_autolog__ = True
    return fit


def _client():
    if _config.get("client") is not None:
        return _config["client"]
    from modelog.sdk.fluent import default_client

    return default_client()


def _logged_fit(original, est, args, kwargs):
    from modelog.sdk.tracking import active_run

    X = args[0] if args else kwargs.get("X")
    y = args[1] if len(args) > 1 else kwargs.get("y")
    run, own = active_run(), False
    if run is None:
        try:
            run = _client().start_run(_config.get("experiment", "default"), name=type(est).__name__)
            own = True
        except Exception as exc:  # never break training for logging
            log.warning("autolog: could not start a run (%s); fitting without logging", exc)
            return original(est, *args, **kwargs)
    _safely("params", lambda: run.log_params(flat_params(est)))
    _safely("tags", lambda: run.set_tags({"modelog.autolog": FLAVOR, "estimator": type(est).__name__}))
    try:
        fitted = original(est, *args, **kwargs)
    except BaseException as exc:
        if own:
            run.end("FAILED", error=f"{type(exc).__name__}: {exc}"[:1000])
        raise
    _safely("metrics", lambda: _log_metrics(run, est, X, y))
    if best_params(est):
        _safely("best params", lambda: run.log_params(best_params(est)))
    if _config.get("log_datasets", True) and X is not None:
        _safely("dataset", lambda: run.log_dataset(_config.get("dataset", "training-data"), training_frame(X, y),
                                                   role="train"))
    if _config.get("log_models", True):
        _safely("model", lambda: _log_model(run, est))
    if own:
        run.end()
    return fitted


def _safely(what: str, fn) -> None:
    try:
        fn()
    except Exception as exc:  # a logging failure is a warning, never a training failure
        log.warning("autolog: could not log the %s: %s", what, exc)


def flat_params(est) -> dict[str, str]:
    """``get_params(deep=True)`` as text: nested estimators by class name, long values cut."""
    out: dict[str, str] = {}
    for key, value in sorted(est.get_params(deep=True).items()):
        text = type(value).__name__ if hasattr(value, "get_params") else repr(value) if isinstance(
            value, (list, tuple, dict)) else str(value)
        out[key] = text[:MAX_PARAM_CHARS]
    return out


def best_params(est) -> dict[str, str]:
    """A fitted search's ``best_params_`` as ``best.<name>`` text params (none for other estimators)."""
    best = getattr(est, "best_params_", None)
    return {f"best.{k}": str(v)[:MAX_PARAM_CHARS] for k, v in best.items()} if isinstance(best, dict) else {}


def _log_metrics(run, est, X, y) -> None:
    metrics: dict[str, float] = {}
    if y is not None and hasattr(est, "score"):
        metrics["training_score"] = float(est.score(X, y))
    if getattr(est, "best_score_", None) is not None:
        metrics["best_cv_score"] = float(est.best_score_)
    if metrics:
        run.log_metrics(metrics)
    curve = getattr(est, "loss_curve_", None)
    if curve:
        for step, loss in enumerate(curve):
            run.log_metric("training_loss", float(loss), step=step)


def training_frame(X, y):
    """X (and y as column ``target``) as a pandas DataFrame with text column names, for a dataset version."""
    import numpy as np
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        df = X.copy()
        df.columns = [str(c) for c in df.columns]
    else:
        arr = np.asarray(X)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        df = pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
    if y is not None:
        df["target"] = np.asarray(y)
    return df


def _log_model(run, est) -> None:
    from modelog.wire.errors import ConfigError

    with tempfile.TemporaryDirectory(prefix="modelog-autolog-") as tmp:
        path = Path(tmp) / "model.pkl"
        with path.open("wb") as fh:
            pickle.dump(est, fh, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            run.log_artifact(path, "model/model.pkl")
            run.flush()  # the upload reads the file: wait for it before the directory goes
        except ConfigError as exc:
            log.warning("autolog: the model file was not stored (no artifact store: %s)", exc)
