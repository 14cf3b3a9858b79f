"""Framework integrations (autologging) and, later, importers, each built on the SDK.

``modelog.autolog()`` turns on autologging for every supported framework that is installed; so far
scikit-learn (``integrations/sklearn.py``). XGBoost, LightGBM, Keras, Lightning and Hugging Face are
not built yet (issue 13).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

log = logging.getLogger("modelog.autolog")

FRAMEWORKS = {"sklearn": "modelog.integrations.sklearn"}  # import name of the framework -> our module


def autolog(*, disable: bool = False, log_models: bool = True, log_datasets: bool = True,
            experiment: str = "default", client: Any = None) -> list[str]:
    """Log every training call of the installed, supported frameworks without code in the loop: params,
    metrics (per iteration where the framework has them), the training data as a dataset version, the
    fitted model as a stored artifact, and the environment (the run's). Returns the frameworks turned on
    (or off, with ``disable=True``).

    A fit inside an active run logs to that run; otherwise each fit gets a run of its own in
    ``experiment``. ``client``: the SDK client to log through (default: the process's default client).

    Example::

        import modelog
        modelog.autolog()
        RandomForestClassifier().fit(X, y)   # a run with params, training_score, data and model.pkl
    """
    import importlib

    done = []
    for framework, module in FRAMEWORKS.items():
        if importlib.util.find_spec(framework) is None:
            continue
        integration = importlib.import_module(module)
        if disable:
            integration.disable()
        else:
            integration.enable(client, log_models=log_models, log_datasets=log_datasets, experiment=experiment)
        done.append(framework)
    log.info("autolog %s: %s", "off" if disable else "on", ", ".join(done) or "no supported framework installed")
    return done


__all__ = ["autolog"]
