"""What every autologging integration shares: its options, the one training session per thread (only the
outermost training call logs: a Pipeline's steps, a search's candidates, the ``xgboost.train`` inside
``XGBClassifier.fit`` run inside it), the run a session logs to, and logging that never breaks training.

Each integration module (``sklearn``, ``xgboost``, ``lightgbm``, ``keras``, ``lightning``,
``transformers``) has ``enable(client, log_models=, log_datasets=, experiment=)``, ``disable()`` and
``enabled()``, and wraps the framework's training entry points with :func:`training`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
import numbers
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("modelog.autolog")

MAX_PARAM_CHARS = 500
MAX_DATASET_CELLS = 50_000_000  # larger training data is not hashed into a dataset version (a warning says so)
_state = threading.local()  # depth of autologged training calls in this thread (any framework)


class Options:
    """One integration's options, set by ``enable`` and cleared by ``disable``."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def set(self, client=None, *, log_models: bool = True, log_datasets: bool = True,
            experiment: str = "default") -> None:
        self.values.update(client=client, log_models=log_models, log_datasets=log_datasets, experiment=experiment)

    def clear(self) -> None:
        self.values.clear()  # drop the client reference

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def client(self):
        if self.values.get("client") is not None:
            return self.values["client"]
        from modelog.sdk.fluent import default_client

        return default_client()


def inside_training() -> bool:
    """True inside an autologged training call of this thread (of any framework)."""
    return bool(getattr(_state, "depth", 0))


@contextlib.contextmanager
def training(flavor: str, name: str, options: Options, tags: Mapping[str, str] | None = None) -> Iterator[Any]:
    """The run one training call logs to, or None: None inside another autologged training call (only the
    outermost logs) and when no run could be started (a warning; training goes on unlogged).

    The run is the active one if there is one; else a new run in the options' experiment named ``name``,
    ended when the block ends -- FAILED with the error if it raises (the error propagates). Tags
    ``modelog.autolog = <flavor>`` and ``tags`` are set on it.

    Example::

        with training("xgboost", "train", options) as run:
            if run is None:
                return original(...)
            ...
    """
    if inside_training():
        yield None
        return
    _state.depth = 1
    try:
        from modelog.sdk.tracking import active_run

        run, own = active_run(), False
        if run is None:
            try:
                run = options.client().start_run(options.get("experiment", "default"), name=name)
                own = True
            except Exception as exc:  # never break training for logging
                log.warning("autolog: could not start a run (%s); training without logging", exc)
        if run is not None:
            safely("tags", lambda: run.set_tags({"modelog.autolog": flavor, **(tags or {})}))
        try:
            yield run
        except BaseException as exc:
            if own:
                safely("run's end", lambda: run.end("FAILED", error=f"{type(exc).__name__}: {exc}"[:1000]))
            raise
        if own:
            safely("run's end", run.end)
    finally:
        _state.depth = 0


def safely(what: str, fn: Callable[[], Any]) -> Any:
    """Call ``fn``; a failure is a warning in the ``modelog.autolog`` logger, never a training failure."""
    try:
        return fn()
    except Exception as exc:
        log.warning("autolog: could not log the %s: %s", what, exc)
        return None


def param_text(value: Any) -> Any:
    """A param value as the SDK takes it: scalars as they are, anything else as text, cut to 500 characters."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, numbers.Number):
        return value.item() if hasattr(value, "item") else float(value)
    text = type(value).__name__ if hasattr(value, "get_params") else repr(value) if isinstance(
        value, (list, tuple, dict)) else str(value)
    return text[:MAX_PARAM_CHARS]


def params_of(values: Mapping[str, Any], prefix: str = "", skip_none: bool = True) -> dict[str, Any]:
    """A mapping of params (nested mappings flattened with ``.``) as the SDK takes them; names that break
    the name rule get their offending characters replaced by ``_``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = safe_name(f"{prefix}{key}")
        if isinstance(value, Mapping) and value:
            out.update(params_of(value, f"{name}.", skip_none))
        elif value is not None or not skip_none:
            out[name] = param_text(value)
    return out


def safe_name(text: str) -> str:
    from modelog.integrations.tensorboard import safe_name as tb_safe

    return tb_safe(str(text))


def numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite-or-not numbers of ``metrics`` (strings, tensors of more than one value and None dropped),
    under names that keep the name rule."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if hasattr(value, "item"):  # numpy, torch and jax scalars
            try:
                value = value.item()
            except Exception:  # more than one value
                continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        out[safe_name(key)] = float(value)
    return out


def log_metrics(run, metrics: Mapping[str, Any], step: int | None) -> None:
    values = numeric(metrics)
    if values:
        safely("metrics", lambda: run.log_metrics(values, step=step))


def log_history(run, history: Mapping[str, Mapping[str, list]]) -> None:
    """Per-iteration metric lists ``{data: {metric: [v0, v1, ...]}}`` (XGBoost's ``evals_result()``,
    LightGBM's ``evals_result_``) as ``<data>-<metric>`` points, step = iteration."""
    for data, metrics in (history or {}).items():
        for metric, values in metrics.items():
            name = safe_name(f"{data}-{metric}")
            for step, value in enumerate(values):
                safely("metrics", lambda: run.log_metric(name, float(value), step=step))


def training_frame(X, y=None):
    """X (and y as column ``target``) as a pandas DataFrame with text column names, for a dataset version.
    Arrays of more than two dimensions (images) are flattened per row."""
    import numpy as np
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        df = X.copy()
        df.columns = [str(c) for c in df.columns]
    else:
        if hasattr(X, "toarray"):  # scipy sparse
            X = X.toarray()
        arr = np.asarray(X)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        elif arr.ndim > 2:
            arr = arr.reshape(arr.shape[0], -1)
        df = pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
    if y is not None:
        target = np.asarray(y)
        if target.ndim > 1:
            for i, column in enumerate(target.reshape(target.shape[0], -1).T):
                df[f"target{i}"] = column
        else:
            df["target"] = target
    return df


def log_training_data(run, options: Options, X, y=None, name: str = "training-data") -> None:
    """The training data as a version of the dataset ``training-data`` (its content hash), consumed with
    role ``train``. Skipped when ``log_datasets=False``, when X is unknown, and (with a warning) when it is
    larger than 50 million cells."""
    if not options.get("log_datasets", True) or X is None:
        return
    shape = getattr(X, "shape", None)
    if shape is not None and math.prod(int(d) for d in shape) > MAX_DATASET_CELLS:
        log.warning("autolog: training data of shape %s not logged as a dataset version (over %d cells)", shape,
                    MAX_DATASET_CELLS)
        return
    safely("dataset", lambda: run.log_dataset(name, training_frame(X, y), role="train"))


def log_model(run, options: Options, save: Callable[[Path], None], artifact: str, directory: bool = False) -> None:
    """Save the model with ``save(tmp)`` into a temporary directory and store what it wrote: the one file
    as the artifact ``artifact`` (``model/model.json``), or with ``directory=True`` every file under
    ``artifact/`` (``model/config.json`` ...). Skipped when ``log_models=False``; without an artifact store,
    a warning."""
    if not options.get("log_models", True):
        return

    def store() -> None:
        from modelog.wire.errors import ConfigError

        with tempfile.TemporaryDirectory(prefix="modelog-autolog-") as tmp:
            saved = Path(tmp)
            save(saved)
            files = [p for p in saved.rglob("*") if p.is_file()]
            try:
                if directory:
                    run.log_artifacts(saved, artifact)
                else:
                    [file] = files  # one file: what the integration asked save() to write
                    run.log_artifact(file, artifact)
                run.flush()  # the upload reads the files: wait for it before the directory goes
            except ConfigError as exc:
                log.warning("autolog: the model was not stored (no artifact store: %s)", exc)

    safely("model", store)


def wrap_methods(classes, method: str, make: Callable[[Any], Any], patched: dict) -> None:
    """Replace ``method`` on the class each of ``classes`` takes it from (once each) by ``make(original)``;
    ``patched`` keeps (class, original) for :func:`restore`."""
    for cls in classes:
        owner = next((k for k in cls.__mro__ if method in k.__dict__), None)
        if owner is None or (owner, method) in patched:
            continue
        original = owner.__dict__[method]
        if getattr(original, "__modelog_autolog__", False):
            continue
        patched[(owner, method)] = original
        wrapper = make(original)
        wrapper.__modelog_autolog__ = True
        setattr(owner, method, wrapper)


def wrap_functions(modules, name: str, make: Callable[[Any], Any], patched: dict) -> None:
    """Replace the function ``name`` in each of ``modules`` (the same original everywhere) by one wrapper."""
    originals = {id(getattr(m, name)): getattr(m, name) for m in modules
                 if not getattr(getattr(m, name), "__modelog_autolog__", False)}
    for original in originals.values():
        wrapper = make(original)
        wrapper.__modelog_autolog__ = True
        for module in modules:
            if getattr(module, name) is original:
                patched[(module, name)] = original
                setattr(module, name, wrapper)


def restore(patched: dict) -> None:
    for (owner, name), original in patched.items():
        setattr(owner, name, original)
    patched.clear()


def boosting_train(original, flavor: str, options: Options, *, params: Callable[[dict], Mapping[str, Any]],
                   dataset: Callable[[Any, dict], None], callback: Callable[[Any], Any], model_file: str):
    """Wrap a gradient-boosting library's ``train(params, data, ..., callbacks=)`` (XGBoost, LightGBM).

    For the outermost training call: ``params(call)`` (the bound call's arguments) become params,
    ``dataset(run, call)`` logs the training data before training (a library may free it), the
    ``callback(run)`` that logs each round's evaluations joins the caller's callbacks, and the booster
    is stored as ``model/<model_file>`` with its own ``save_model``."""
    signature = inspect.signature(original)

    @functools.wraps(original)
    def train(*args, **kwargs):
        with training(flavor, f"{flavor}.train", options) as run:
            if run is None:
                return original(*args, **kwargs)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            call = bound.arguments
            safely("params", lambda: run.log_params(params_of(params(call))))
            safely("dataset", lambda: dataset(run, call))
            call["callbacks"] = [*(call.get("callbacks") or []), callback(run)]
            booster = original(*bound.args, **bound.kwargs)
            log_model(run, options, lambda d: booster.save_model(str(d / model_file)), f"model/{model_file}")
            return booster

    return train


def boosting_fit(original, flavor: str, options: Options, *, history: Callable[[Any], Mapping],
                 save: Callable[[Any, str], None], model_file: str):
    """Wrap ``fit(X, y, ...)`` of a gradient-boosting library's scikit-learn API.

    For the outermost training call: ``get_params()`` as params, ``history(estimator)`` (the
    per-round evaluations of ``eval_set``) with step = the round, ``training_score`` when ``y`` is
    given, X and y as the dataset version, and ``save(estimator, path)`` as ``model/<model_file>``."""

    @functools.wraps(original)
    def fit(self, X, y=None, *args, **kwargs):
        name = type(self).__name__
        with training(flavor, name, options, {"estimator": name}) as run:
            if run is None:
                return original(self, X, y, *args, **kwargs)
            safely("params", lambda: run.log_params(params_of(self.get_params())))
            fitted = original(self, X, y, *args, **kwargs)
            safely("metrics", lambda: log_history(run, history(self)))
            if y is not None:
                safely("metrics", lambda: run.log_metric("training_score", float(self.score(X, y))))
            log_training_data(run, options, X, y)
            log_model(run, options, lambda d: save(self, str(d / model_file)), f"model/{model_file}")
            return fitted

    return fit
