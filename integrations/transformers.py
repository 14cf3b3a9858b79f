"""Autologging for the Hugging Face ``transformers.Trainer``: every ``Trainer.train``.

``enable()`` wraps ``transformers.Trainer.train``; ``disable()`` restores it. For the outermost ``train``
(see ``_autolog.training``) a :class:`ModelogCallback` is added to the trainer for the call, and:

* params: the ``TrainingArguments`` (``args.to_dict()``: ``learning_rate``, ``num_train_epochs``,
  ``per_device_train_batch_size`` ...) and the model's config as ``config.<name>``;
* metrics: every numeric value of each ``on_log`` (``loss``, ``learning_rate``, ``grad_norm``,
  ``epoch``, the evaluation's ``eval_loss`` ...) with step = the global step, as training goes;
  with ``logging_strategy="epoch"`` that is one point per epoch;
* the training data as a version of the dataset ``training-data`` when ``train_dataset`` is a
  ``datasets.Dataset`` (``to_pandas()``) or a ``TensorDataset`` (other datasets: not logged);
* the model as the files ``trainer.save_model`` writes (``model/config.json``,
  ``model/model.safetensors`` ...).

Tag ``modelog.autolog = transformers``.
"""

from __future__ import annotations

import functools

import transformers

from modelog.integrations import _autolog

FLAVOR = "transformers"
_patched: dict = {}
_options = _autolog.Options()


class ModelogCallback(transformers.TrainerCallback):
    """Logs each ``on_log`` to ``run`` with step = the global step. Usable by hand:
    ``Trainer(..., callbacks=[ModelogCallback(run)])``."""

    def __init__(self, run) -> None:
        self.run = run

    def on_log(self, args, state, control, logs=None, **kwargs):
        _autolog.log_metrics(self.run, logs or {}, state.global_step)


def enable(client=None, *, log_models: bool = True, log_datasets: bool = True,
           experiment: str = "default") -> None:
    """Wrap ``transformers.Trainer.train`` (idempotent)."""
    _options.set(client, log_models=log_models, log_datasets=log_datasets, experiment=experiment)
    _autolog.wrap_methods([transformers.Trainer], "train", _wrap_train, _patched)


def disable() -> None:
    _autolog.restore(_patched)
    _options.clear()


def enabled() -> bool:
    return bool(_patched)


def _params(trainer) -> dict:
    params = _autolog.params_of(trainer.args.to_dict())
    config = getattr(trainer.model, "config", None)
    if config is not None:
        params.update(_autolog.params_of(config.to_dict(), "config."))
    return params


def _log_dataset(run, dataset) -> None:
    if hasattr(dataset, "to_pandas"):  # datasets.Dataset
        frame = dataset.to_pandas()
        _autolog.log_training_data(run, _options, frame)
        return
    from torch.utils.data import TensorDataset

    if isinstance(dataset, TensorDataset):
        tensors = [t.detach().cpu().numpy() for t in dataset.tensors]
        _autolog.log_training_data(run, _options, tensors[0], tensors[-1] if len(tensors) > 1 else None)


def _wrap_train(original):
    @functools.wraps(original)
    def train(self, *args, **kwargs):
        name = type(self.model).__name__
        with _autolog.training(FLAVOR, name, _options, {"estimator": name}) as run:
            if run is None:
                return original(self, *args, **kwargs)
            _autolog.safely("params", lambda: run.log_params(_params(self)))
            if self.train_dataset is not None and _options.get("log_datasets", True):
                _autolog.safely("dataset", lambda: _log_dataset(run, self.train_dataset))
            callback = ModelogCallback(run)
            self.add_callback(callback)
            try:
                result = original(self, *args, **kwargs)
            finally:
                self.remove_callback(callback)
            _autolog.log_model(run, _options, lambda d: self.save_model(str(d)), "model", directory=True)
            return result

    return train
