"""Autologging for XGBoost: ``xgboost.train`` and the scikit-learn API (``XGBClassifier.fit`` ...).

``enable()`` wraps ``xgboost.train`` (native API) and ``fit`` of the scikit-learn API's estimators;
``disable()`` restores them. For the outermost such call (see ``_autolog.training``):

* native ``xgboost.train(params, dtrain, num_boost_round, evals=...)``: the params (and
  ``num_boost_round``, ``early_stopping_rounds``) as params; a :class:`MetricsCallback` added to
  ``callbacks`` logs every evaluation of every ``evals`` entry after each boosting round as
  ``<data>-<metric>`` (``train-logloss``) with step = the round, as training goes; the training DMatrix's
  content (``get_data()`` and its label) as a version of the dataset ``training-data`` where XGBoost can
  give it back (not for a QuantileDMatrix); the booster as ``model/model.json``;
* the scikit-learn API: ``get_params()`` (None values left out), the per-round ``evals_result()`` of the
  ``eval_set`` as ``validation_0-logloss`` ... with step = the round, ``training_score`` when ``y`` is
  given, X and y as the dataset version, the model as ``model/model.json`` (``save_model``).

Tag ``modelog.autolog = xgboost``. The XGBoost inside a scikit-learn ``GridSearchCV`` or ``Pipeline``
that scikit-learn autologging logs is part of that fit and logs nothing of its own.
"""

from __future__ import annotations

import xgboost

from modelog.integrations import _autolog

FLAVOR = "xgboost"
_patched: dict = {}
_options = _autolog.Options()


class MetricsCallback(xgboost.callback.TrainingCallback):
    """Logs the latest evaluation of every ``evals`` entry after each boosting round to ``run``, with
    step = the round. Usable by hand: ``xgboost.train(..., callbacks=[MetricsCallback(run)])``."""

    def __init__(self, run) -> None:
        super().__init__()
        self.run = run

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        latest = {f"{data}-{metric}": values[-1] for data, metrics in evals_log.items()
                  for metric, values in metrics.items() if values}
        _autolog.log_metrics(self.run, {k: v[0] if isinstance(v, tuple) else v for k, v in latest.items()}, epoch)
        return False  # never stop training


def enable(client=None, *, log_models: bool = True, log_datasets: bool = True,
           experiment: str = "default") -> None:
    """Wrap ``xgboost.train`` and the scikit-learn API's ``fit`` (idempotent)."""
    import xgboost.sklearn
    import xgboost.training

    _options.set(client, log_models=log_models, log_datasets=log_datasets, experiment=experiment)
    _autolog.wrap_functions([xgboost, xgboost.training], "train", _wrap_train, _patched)
    estimators = [cls for cls in vars(xgboost.sklearn).values()
                  if isinstance(cls, type) and issubclass(cls, xgboost.sklearn.XGBModel)]
    _autolog.wrap_methods(estimators, "fit", _wrap_fit, _patched)


def disable() -> None:
    _autolog.restore(_patched)
    _options.clear()


def enabled() -> bool:
    return bool(_patched)


def _wrap_train(original):
    return _autolog.boosting_train(
        original, FLAVOR, _options, model_file="model.json", callback=MetricsCallback,
        params=lambda call: {**(call.get("params") or {}), "num_boost_round": call.get("num_boost_round"),
                             "early_stopping_rounds": call.get("early_stopping_rounds")},
        dataset=lambda run, call: _log_dmatrix(run, call.get("dtrain")))


def _log_dmatrix(run, dtrain) -> None:
    if not _options.get("log_datasets", True) or dtrain is None:
        return
    try:
        data = dtrain.get_data()  # scipy CSR; a QuantileDMatrix cannot give its data back
    except Exception as exc:
        _autolog.log.info("autolog: the training data's version is unknown (%s)", exc)
        return
    label = dtrain.get_label()
    _autolog.log_training_data(run, _options, data, label if len(label) else None)


def _wrap_fit(original):
    return _autolog.boosting_fit(original, FLAVOR, _options, history=lambda est: est.evals_result(),
                                 save=lambda est, path: est.save_model(path), model_file="model.json")
