"""Autologging for PyTorch Lightning (``lightning.pytorch``): every ``Trainer.fit``.

``enable()`` wraps ``lightning.pytorch.Trainer.fit``; ``disable()`` restores it. For the outermost ``fit``
(see ``_autolog.training``) a :class:`ModelogLogger` joins the trainer's loggers for the call, and:

* params: the trainer's ``max_epochs``, ``max_steps``, ``accumulate_grad_batches``, ``precision``, the
  optimizer's class and learning rate, the number of weights, and the module's hyperparameters
  (``self.save_hyperparameters()``), which Lightning hands every logger (``log_hyperparams``);
* metrics: what the module logs (``self.log``) reaches ``log_metrics`` with Lightning's step (the
  global step); epoch-level values come with ``epoch``, which is logged too, so a metric logged with
  ``on_epoch=True`` has one point per epoch;
* the training data as a version of the dataset ``training-data`` when the train dataloader's dataset is
  a ``TensorDataset`` (other datasets have no content to hash: not logged);
* the model as ``model/model.ckpt`` (``trainer.save_checkpoint``).

Tag ``modelog.autolog = lightning``. The logger can be used by hand: ``Trainer(logger=ModelogLogger(run))``.
"""

from __future__ import annotations

import functools
from argparse import Namespace
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from modelog.integrations import _autolog

FLAVOR = "lightning"
_patched: dict = {}
_options = _autolog.Options()


class ModelogLogger(Logger):
    """A Lightning logger writing hyperparameters and metrics to a modelog run."""

    def __init__(self, run) -> None:
        super().__init__()
        self.run = run

    @property
    def name(self) -> str:
        return "modelog"

    @property
    def version(self) -> str:
        return self.run.id

    @property
    def experiment(self):
        return self.run

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        values = vars(params) if isinstance(params, Namespace) else dict(params)
        _autolog.safely("params", lambda: self.run.log_params(_autolog.params_of(values, "hparams.")))

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        _autolog.log_metrics(self.run, metrics, step)


def enable(client=None, *, log_models: bool = True, log_datasets: bool = True,
           experiment: str = "default") -> None:
    """Wrap ``lightning.pytorch.Trainer.fit`` (idempotent)."""
    _options.set(client, log_models=log_models, log_datasets=log_datasets, experiment=experiment)
    _autolog.wrap_methods([pl.Trainer], "fit", _wrap_fit, _patched)


def disable() -> None:
    _autolog.restore(_patched)
    _options.clear()


def enabled() -> bool:
    return bool(_patched)


def _params(trainer, model) -> dict:
    params = {"max_epochs": trainer.max_epochs, "max_steps": trainer.max_steps,
              "accumulate_grad_batches": trainer.accumulate_grad_batches, "precision": trainer.precision,
              "weights": sum(p.numel() for p in model.parameters())}
    return _autolog.params_of(params)


def _log_optimizer(run, trainer) -> None:
    for i, optimizer in enumerate(trainer.optimizers):
        prefix = "optimizer" if i == 0 else f"optimizer{i}"
        group = optimizer.param_groups[0] if optimizer.param_groups else {}
        run.log_params(_autolog.params_of({prefix: type(optimizer).__name__, f"{prefix}.lr": group.get("lr")}))


def _log_dataloader_data(run, loader) -> None:
    from torch.utils.data import TensorDataset

    dataset = getattr(loader, "dataset", None)
    if isinstance(dataset, TensorDataset):
        tensors = [t.detach().cpu().numpy() for t in dataset.tensors]
        _autolog.log_training_data(run, _options, tensors[0], tensors[1] if len(tensors) > 1 else None)


def _wrap_fit(original):
    @functools.wraps(original)
    def fit(self, model, train_dataloaders=None, *args, **kwargs):
        name = type(model).__name__
        with _autolog.training(FLAVOR, name, _options, {"estimator": name}) as run:
            if run is None:
                return original(self, model, train_dataloaders, *args, **kwargs)
            _autolog.safely("params", lambda: run.log_params(_params(self, model)))
            if train_dataloaders is not None:
                _autolog.safely("dataset", lambda: _log_dataloader_data(run, train_dataloaders))
            logger = ModelogLogger(run)
            before = list(self.loggers)
            self.loggers = [*before, logger]
            try:
                result = original(self, model, train_dataloaders, *args, **kwargs)
            finally:
                self.loggers = before
            _autolog.safely("optimizer", lambda: _log_optimizer(run, self))
            _autolog.log_model(run, _options, lambda d: self.save_checkpoint(str(d / "model.ckpt")),
                               "model/model.ckpt")
            return result

    return fit
