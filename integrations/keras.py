"""Autologging for Keras 3 (any backend): every ``Model.fit``.

``enable()`` wraps ``keras.Model.fit``; ``disable()`` restores it. For the outermost ``fit`` (see
``_autolog.training``) a :class:`MetricsCallback` is added to ``callbacks`` and:

* params: ``epochs``, ``batch_size``, ``validation_split``, the optimizer's class and its config
  (``optimizer.learning_rate`` ...), the loss, the number of weights;
* metrics: every value of the epoch's logs (``loss``, ``accuracy``, ``val_loss`` ...) at the end of each
  epoch, step = the epoch (0-based), as training goes;
* the training data as a version of the dataset ``training-data`` when ``x`` is an array or DataFrame
  (a ``tf.data`` pipeline or a generator has no content to hash: not logged);
* the model as ``model/model.keras`` (``model.save``).

Tag ``modelog.autolog = keras``.
"""

from __future__ import annotations

import functools
import inspect

import keras

from modelog.integrations import _autolog

FLAVOR = "keras"
_patched: dict = {}
_options = _autolog.Options()


class MetricsCallback(keras.callbacks.Callback):
    """Logs each epoch's logs to ``run`` with step = the epoch. Usable by hand:
    ``model.fit(..., callbacks=[MetricsCallback(run)])``."""

    def __init__(self, run) -> None:
        super().__init__()
        self.run = run

    def on_epoch_end(self, epoch, logs=None) -> None:
        _autolog.log_metrics(self.run, logs or {}, epoch)


def enable(client=None, *, log_models: bool = True, log_datasets: bool = True,
           experiment: str = "default") -> None:
    """Wrap ``keras.Model.fit`` (idempotent)."""
    _options.set(client, log_models=log_models, log_datasets=log_datasets, experiment=experiment)
    _autolog.wrap_methods([keras.Model], "fit", _wrap_fit, _patched)


def disable() -> None:
    _autolog.restore(_patched)
    _options.clear()


def enabled() -> bool:
    return bool(_patched)


def _params(model, call) -> dict:
    params = {key: call.get(key) for key in ("epochs", "batch_size", "validation_split", "initial_epoch")}
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        params["optimizer"] = type(optimizer).__name__
        config = {k: v for k, v in optimizer.get_config().items() if k != "name"}
        params.update(_autolog.params_of(config, "optimizer."))
    loss = getattr(model, "loss", None)
    if loss is not None:
        params["loss"] = getattr(loss, "__name__", None) or type(loss).__name__ if not isinstance(loss, str) else loss
    params["weights"] = int(model.count_params())
    return _autolog.params_of(params)


def _wrap_fit(original):
    signature = inspect.signature(original)

    @functools.wraps(original)
    def fit(self, *args, **kwargs):
        name = type(self).__name__
        with _autolog.training(FLAVOR, name, _options, {"estimator": name}) as run:
            if run is None:
                return original(self, *args, **kwargs)
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            call = bound.arguments
            _autolog.safely("params", lambda: run.log_params(_params(self, call)))
            x, y = call.get("x"), call.get("y")
            if hasattr(x, "shape"):  # arrays and DataFrames; not datasets or generators
                _autolog.log_training_data(run, _options, x, y if hasattr(y, "shape") else None)
            callbacks = call.get("callbacks")
            if isinstance(callbacks, keras.callbacks.CallbackList):
                callbacks.append(MetricsCallback(run))
            else:
                call["callbacks"] = [*(callbacks or []), MetricsCallback(run)]
            history = original(*bound.args, **bound.kwargs)
            _autolog.log_model(run, _options, lambda d: self.save(str(d / "model.keras")), "model/model.keras")
            return history

    return fit
