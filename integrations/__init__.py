"""Framework integrations (autologging) and importers, each built on the SDK.

``modelog.autolog()`` turns on autologging for every supported framework that is installed:
scikit-learn, XGBoost, LightGBM, Keras 3, PyTorch Lightning and the Hugging Face ``Trainer`` (one module
each; what they share is in ``_autolog.py``). A framework's module is imported only when the framework
is, so modelog imports without any of them.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("modelog.autolog")

# import name of the framework -> our module, in the order they are turned on
FRAMEWORKS = {
    "sklearn": "modelog.integrations.sklearn",
    "xgboost": "modelog.integrations.xgboost",
    "lightgbm": "modelog.integrations.lightgbm",
    "keras": "modelog.integrations.keras",
    "lightning": "modelog.integrations.lightning",
    "transformers": "modelog.integrations.transformers",
}


def autolog(*, disable: bool = False, log_models: bool = True, log_datasets: bool = True,
            experiment: str = "default", client: Any = None, frameworks: Iterable[str] | None = None) -> list[str]:
    """Log every training call of the installed, supported frameworks without code in the loop: params,
    metrics (per iteration or epoch where the framework has them), the training data as a dataset
    version, the trained model as a stored artifact, and the environment (the run's). Returns the
    frameworks turned on (or, with ``disable=True``, off: those that had been turned on).

    A training call inside an active run logs to that run; otherwise each gets a run of its own in
    ``experiment``. ``client``: the SDK client to log through (default: the process's default client).
    ``frameworks``: only these (names of ``FRAMEWORKS``: sklearn, xgboost, lightgbm, keras, lightning,
    transformers); default every one that is installed. A framework that is installed but fails to import
    (Keras without its backend, ``transformers`` without torch) is skipped with a warning.

    Raises ValidationError for a name in ``frameworks`` that is not supported or not installed.

    Example::

        import modelog
        modelog.autolog()                           # ['sklearn', 'xgboost', ...]: what is installed
        RandomForestClassifier().fit(X, y)          # a run with params, training_score, data and model.pkl
        modelog.autolog(frameworks=["xgboost"], disable=True)
    """
    from modelog.wire.errors import ValidationError

    if frameworks is None:
        wanted = [f for f in FRAMEWORKS if importlib.util.find_spec(f) is not None]
    else:
        wanted = list(frameworks)
        for framework in wanted:
            if framework not in FRAMEWORKS:
                raise ValidationError("frameworks", framework, f"must be one of {', '.join(FRAMEWORKS)}")
            if importlib.util.find_spec(framework) is None:
                raise ValidationError("frameworks", framework, "must be installed (it cannot be imported)")
    done = []
    for framework in wanted:
        if disable and FRAMEWORKS[framework] not in sys.modules:  # never turned on: nothing to import or restore
            continue
        try:
            integration = importlib.import_module(FRAMEWORKS[framework])
        except Exception as exc:  # installed but not importable as it is (a missing backend)
            log.warning("autolog: %s is installed but cannot be imported (%s); not logged", framework, exc)
            continue
        if disable:
            integration.disable()
        else:
            integration.enable(client, log_models=log_models, log_datasets=log_datasets, experiment=experiment)
        done.append(framework)
    log.info("autolog %s: %s", "off" if disable else "on", ", ".join(done) or "no supported framework installed")
    return done


__all__ = ["autolog"]
