"""Autologging for scikit-learn: every ``fit`` of an estimator, pipeline or search becomes a run's record.

``enable(client=None, log_models=True, log_datasets=True, experiment="default")`` wraps ``fit`` of every
scikit-learn estimator class; ``disable()`` restores them. Only the outermost training call logs, of any
framework (a Pipeline's steps, a search's candidates -- an ``XGBClassifier`` among them -- fit inside it;
see ``_autolog.training``). For that fit:

* the run: the active run if there is one, else a new run in ``experiment`` named after the estimator
  class, ended when ``fit`` returns (FAILED with the error if it raises; the error is raised again);
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

from modelog.integrations import _autolog
from modelog.integrations._autolog import MAX_PARAM_CHARS, training_frame  # noqa: F401  (part of this module's API)

log = logging.getLogger("modelog.autolog")

FLAVOR = "sklearn"
_patched: dict = {}  # (class, "fit") -> its own original fit
_options = _autolog.Options()


def enable(client=None, *, log_models: bool = True, log_datasets: bool = True,
           experiment: str = "default") -> None:
    """Wrap ``fit`` of every scikit-learn estimator class (idempotent). ``client``: the SDK client to log
    through (default: the process's default client, as ``modelog.start_run`` uses)."""
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.utils import all_estimators

    _options.set(client, log_models=log_models, log_datasets=log_datasets, experiment=experiment)
    classes = {cls for _, cls in all_estimators()} | {Pipeline, FeatureUnion, GridSearchCV, RandomizedSearchCV}
    owners = set()  # the class each fit is defined on (GridSearchCV's is BaseSearchCV's)
    for cls in classes:
        owner = next((k for k in cls.__mro__ if "fit" in k.__dict__), None)
        if owner is not None and owner.__module__.startswith("sklearn"):
            owners.add(owner)
    _autolog.wrap_methods(owners, "fit", _wrap, _patched)


def disable() -> None:
    """Restore every wrapped ``fit``."""
    _autolog.restore(_patched)
    _options.clear()


def enabled() -> bool:
    return bool(_patched)


def _wrap(original):
    @functools.wraps(original)
    def fit(self, *args, **kwargs):  # signatures differ (LabelEncoder.fit(y)): pass everything through
        with _autolog.training(FLAVOR, type(self).__name__, _options, {"estimator": type(self).__name__}) as run:
            if run is None:  # inside another estimator's fit (only the outermost one logs), or no run
                return original(self, *args, **kwargs)
            X = args[0] if args else kwargs.get("X")
            y = args[1] if len(args) > 1 else kwargs.get("y")
            _autolog.safely("params", lambda: run.log_params(flat_params(self)))
            fitted = original(self, *args, **kwargs)
            _autolog.safely("metrics", lambda: _log_metrics(run, self, X, y))
            if best_params(self):
                _autolog.safely("best params", lambda: run.log_params(best_params(self)))
            _autolog.log_training_data(run, _options, X, y)
            _autolog.log_model(run, _options, lambda d: _pickle(self, d / "model.pkl"), "model/model.pkl")
            return fitted

    return fit


def _pickle(est, path) -> None:
    with path.open("wb") as fh:
        pickle.dump(est, fh, protocol=pickle.HIGHEST_PROTOCOL)


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
