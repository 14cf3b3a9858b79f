"""Autologging for LightGBM: ``lightgbm.train`` and the scikit-learn API (``LGBMClassifier.fit`` ...).

``enable()`` wraps ``lightgbm.train`` (native API) and ``fit`` of the scikit-learn API's estimators;
``disable()`` restores them. For the outermost such call (see ``_autolog.training``):

* native ``lightgbm.train(params, train_set, num_boost_round, valid_sets=...)``: the params (and
  ``num_boost_round``) as params; the callback :func:`metrics_callback` added to ``callbacks`` logs every
  evaluation after each iteration as ``<data>-<metric>`` (``valid_0-binary_logloss``) with step = the
  iteration, as training goes; the training Dataset's data and label as a version of the dataset
  ``training-data`` (a file it was built from is versioned by its content); the booster as
  ``model/model.txt``;
* the scikit-learn API: ``get_params()`` (None values left out), the per-iteration ``evals_result_`` of
  the ``eval_set`` with step = the iteration, ``training_score`` when ``y`` is given, X and y as the
  dataset version, the booster as ``model/model.txt``.

Tag ``modelog.autolog = lightgbm``. A LightGBM inside a scikit-learn fit that scikit-learn autologging logs
is part of that fit and logs nothing of its own.
"""

from __future__ import annotations

from pathlib import Path

import lightgbm

from modelog.integrations import _autolog

FLAVOR = "lightgbm"
_patched: dict = {}
_options = _autolog.Options()


def metrics_callback(run):
    """A LightGBM callback logging each iteration's evaluations to ``run`` (step = the iteration).
    Usable by hand: ``lightgbm.train(..., callbacks=[metrics_callback(run)])``."""

    def callback(env) -> None:
        values = {f"{item[0]}-{item[1]}": item[2] for item in env.evaluation_result_list or []}
        _autolog.log_metrics(run, values, env.iteration)

    callback.order = 100  # after LightGBM's own (early stopping records at 30)
    callback.before_iteration = False
    return callback


def enable(client=None, *, log_models: bool = True, log_datasets: bool = True,
           experiment: str = "default") -> None:
    """Wrap ``lightgbm.train`` and the scikit-learn API's ``fit`` (idempotent)."""
    import lightgbm.engine
    import lightgbm.sklearn

    _options.set(client, log_models=log_models, log_datasets=log_datasets, experiment=experiment)
    _autolog.wrap_functions([lightgbm, lightgbm.engine], "train", _wrap_train, _patched)
    estimators = [cls for cls in vars(lightgbm.sklearn).values()
                  if isinstance(cls, type) and issubclass(cls, lightgbm.sklearn.LGBMModel)]
    _autolog.wrap_methods(estimators, "fit", _wrap_fit, _patched)


def disable() -> None:
    _autolog.restore(_patched)
    _options.clear()


def enabled() -> bool:
    return bool(_patched)


def _wrap_train(original):
    return _autolog.boosting_train(
        original, FLAVOR, _options, model_file="model.txt", callback=metrics_callback,
        params=lambda call: {**(call.get("params") or {}), "num_boost_round": call.get("num_boost_round")},
        dataset=lambda run, call: _log_dataset(run, call.get("train_set")))


def _log_dataset(run, train_set) -> None:
    if not _options.get("log_datasets", True) or train_set is None:
        return
    data = getattr(train_set, "data", None)
    if isinstance(data, (str, Path)):  # built from a file: that file's content is the version
        run.log_dataset("training-data", str(data), role="train")
        return
    _autolog.log_training_data(run, _options, data, getattr(train_set, "label", None))


def _wrap_fit(original):
    return _autolog.boosting_fit(original, FLAVOR, _options, history=lambda est: est.evals_result_,
                                 save=lambda est, path: est.booster_.save_model(path), model_file="model.txt")
