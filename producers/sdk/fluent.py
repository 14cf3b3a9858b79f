"""The fluent verbs: ``modelog.start_run``, ``log_metrics``, ``promote`` ... on a process-wide default client.

The default client is built from the environment on first use; ``modelog.configure(...)``
replaces it. Verbs for "the active run" act on :func:`modelog.sdk.tracking.active_run`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from modelog.sdk import artifacts
from modelog.sdk.client import Client
from modelog.sdk.registry import ModelVersion, Registry, RequestStatus
from modelog.sdk.tracking import Run, active_run
from modelog.wire.emitter import Emitter
from modelog.wire.errors import NoActiveRunError
from modelog.wire.settings import Settings

_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Client()
    return _default


def configure(settings: Settings | None = None, emitter: Emitter | None = None, **overrides: Any) -> Client:
    """Replace the process-wide default client, e.g. ``modelog.configure(bootstrap="kafka:9092")``."""
    global _default
    with _default_lock:
        if _default is not None:
            _default.close()
        _default = Client(settings or Settings.load(**overrides), emitter=emitter)
    return _default


# -- module-level verbs for the active run -------------------------------------------

def _require_run() -> Run:
    run = active_run()
    if run is None:
        raise NoActiveRunError("no active run: call modelog.start_run(...) first")
    return run


def start_run(experiment: str = "default", name: str | None = None, tags: dict[str, Any] | None = None,
              *, run_id: str | None = None, subject: str | None = None) -> Run:
    """Start a run in ``experiment`` and make it active; use it as a context manager.

    Records the environment (Python, platform, packages, git, host, CPUs, GPUs, command).
    ``subject``: the opaque id of the person this run's sensitive params and tags are about (e.g.
    ``"patient-0042"``, never an e-mail address); their values are sealed with that subject's data key
    and ``modelog erase --subject`` makes them unreadable everywhere (docs/security.md).
    Raises ValidationError for a bad experiment/name/tags/subject, ModelogError if a run is already active.

    Example::

        with modelog.start_run(experiment="credit-risk", name="baseline", tags={"team": "risk"}) as run:
            run.log_metrics({"loss": 0.1}, step=1)
    """
    return default_client().start_run(experiment, name, tags, run_id=run_id, subject=subject)


def wait_projected(timeout: float = 30.0) -> float:
    """Block until the views hold every event this process published. See :meth:`Client.wait_projected`."""
    return default_client().wait_projected(timeout)


def end_run(status: str = "FINISHED") -> None:
    """End the active run with ``status`` (FINISHED, FAILED or KILLED); flushes with a bounded timeout."""
    _require_run().end(status)


def log_metric(key: str, value: float, step: int | None = None, timestamp: Any = None) -> None:
    _require_run().log_metric(key, value, step=step, timestamp=timestamp)


def log_metrics(metrics: dict[str, float], step: int | None = None, timestamp: Any = None) -> None:
    _require_run().log_metrics(metrics, step=step, timestamp=timestamp)


def log_param(key: str, value: Any, *, sensitive: bool = False) -> None:
    _require_run().log_param(key, value, sensitive=sensitive)


def log_params(params: dict[str, Any], *, sensitive: bool = False) -> None:
    _require_run().log_params(params, sensitive=sensitive)


def set_tag(key: str, value: Any, *, sensitive: bool = False) -> None:
    _require_run().set_tag(key, value, sensitive=sensitive)


def set_tags(tags: dict[str, Any], *, sensitive: bool = False) -> None:
    _require_run().set_tags(tags, sensitive=sensitive)


def log_artifact(local_path: str, artifact_path: str | None = None, *, store: bool = True) -> list[dict]:
    """Record and store a file (or a directory's files) of the active run. See :meth:`Run.log_artifact`."""
    return _require_run().log_artifact(local_path, artifact_path, store=store)


def log_artifacts(local_dir: str, artifact_path: str | None = None, *, store: bool = True) -> list[dict]:
    """Record and store every file under ``local_dir`` for the active run. See :meth:`Run.log_artifacts`."""
    return _require_run().log_artifacts(local_dir, artifact_path, store=store)


# -- reading artifacts back ---------------------------------------------------------------

def download_artifact(run_id: str, path: str, dest: str | None = None) -> Path:
    """Download a run's artifact (a file, or every file under a directory) from the artifact store.

    Every byte is checked against the logged sha256. ``dest``: a file path or an existing directory
    (default: the current directory). Returns the file or directory written. Raises ArtifactError
    (missing, corrupted, not stored: names the run, the path, the expected and actual sha256; nothing is
    left at ``dest``), ValidationError for a path that could escape (``..``, ``%2e%2e``, absolute, ``file:``).

    Example::

        modelog.download_artifact(run_id, "model.pkl", "/tmp/model.pkl")
    """
    return artifacts.download(run_id, path, dest, default_client().settings)


def load_model_path(name: str, *, version: int | None = None, alias: str | None = None, stage: str | None = None,
                    dest: str | None = None) -> Path:
    """The local path of a registered model's artifact, downloaded (checked) from the artifact store.

    Pick the version with exactly one of ``version``, ``alias`` or ``stage`` (the latest version in it).
    Default ``dest``: ``$MODELOG_HOME/models/<name>/<version>/`` (kept: not downloaded again).
    Raises ArtifactError (no such version, nothing stored, missing or corrupted bytes).

    Example::

        path = modelog.load_model_path("credit-risk", alias="champion")
        model = pickle.loads(path.read_bytes())
    """
    return artifacts.load_model_path(name, default_client().settings, version=version, alias=alias, stage=stage,
                                     dest=dest)


# -- datasets and lineage ---------------------------------------------------------------

def log_dataset(name: str, data: Any, role: str = "train", *, description: str | None = None,
                tags: dict[str, Any] | None = None, uri: str | None = None) -> Any:
    """Record that the active run used a dataset (file, directory, DataFrame); see :meth:`Run.log_dataset`.

    Raises NoActiveRunError outside a run, ValidationError for bad input. Returns the DatasetVersion.

    Example::

        with modelog.start_run(experiment="credit-risk"):
            modelog.log_dataset("credit-applications", train_df, role="train")
    """
    return _require_run().log_dataset(name, data, role, description=description, tags=tags, uri=uri)


def register_dataset(name: str, data: Any, *, description: str | None = None, tags: dict[str, Any] | None = None,
                     uri: str | None = None, derived_from: Any = None, transform: str | None = None,
                     code_ref: str | None = None, subject: str | None = None) -> Any:
    """Record a dataset version (no run needed), optionally derived from other dataset versions.

    ``data``: a file or directory path, a pandas DataFrame or a pyarrow Table; its sha256 content
    hash is the version. ``derived_from``: DatasetVersions or ``dataset:<name>@<version>`` ids, made
    into this one by ``transform`` (a name) whose code is at ``code_ref`` (e.g. ``git:<commit>:etl/clean.py``).
    Returns the :class:`DatasetVersion`. Raises ValidationError (nothing published) for bad input.
    ``subject``: whose personal data the URI is, when the policy marks the dataset sensitive
    (``modelog policy set --sensitive-dataset NAME``): the URI is sealed with that subject's data key
    (``log_dataset`` in a run uses the run's subject).

    Example::

        raw = modelog.register_dataset("applications-raw", "raw.csv")
        clean = modelog.register_dataset("applications", clean_df, derived_from=[raw], transform="dedupe")
    """
    return default_client().register_dataset(name, data, description=description, tags=tags, uri=uri,
                                              derived_from=derived_from, transform=transform, code_ref=code_ref,
                                              subject=subject)


def record_lineage(src: Any, relation: str, dst: Any, *, role: str | None = None, transform: str | None = None,
                   code_ref: str | None = None) -> None:
    """Record one lineage edge ``src --relation--> dst`` you know about.

    Nodes: ``run:<run_id>``, ``dataset:<name>@<version>``, ``model:<name>/<version>``,
    ``deployment:<model>/<environment>``, ``artifact:<run_id>/<path>`` (or a DatasetVersion / Run).
    ``relation``: consumed (data -> run), produced (run -> data/model), derived (data -> data),
    deployed (model -> deployment). Raises ValidationError naming the field and the rule.

    Example::

        modelog.record_lineage("dataset:features@3f2a...", "consumed", run, role="train")
    """
    default_client().record_lineage(src, relation, dst, role=role, transform=transform, code_ref=code_ref)


# -- the model registry on the default client ---------------------------------------------

def _registry() -> Registry:
    return default_client().registry


def register_model(model: str, **kw: Any) -> ModelVersion:
    """Register a version of ``model`` (run_id defaults to the active run's). See Registry.register_model."""
    run = active_run()
    if run is not None and kw.get("run_id") is None:
        run.flush()
        kw["run_id"] = run.id
    return _registry().register_model(model, **kw)


def annotate_model(model: str, version: int | None = None, **kw: Any) -> None:
    _registry().annotate(model, version, **kw)


def request_change(model: str, action: str, **kw: Any) -> RequestStatus:
    return _registry().request(model, action, **kw)


def promote(model: str, version: int, to: str, **kw: Any) -> RequestStatus:
    """Request ``version`` of ``model`` be moved to stage ``to``; ``wait=True`` blocks for the decision."""
    return _registry().promote(model, version, to, **kw)


def set_alias(model: str, alias: str, version: int, **kw: Any) -> RequestStatus:
    return _registry().set_alias(model, alias, version, **kw)


def approve(model: str, request_id: str, comment: str | None = None) -> None:
    _registry().approve(model, request_id, comment)


def reject(model: str, request_id: str, comment: str | None = None) -> None:
    _registry().reject(model, request_id, comment)


def record_deployment(model: str, version: int, environment: str, **kw: Any) -> str:
    return _registry().record_deployment(model, version, environment, **kw)


def grant_role(principal: str, role: str, model: str | None = None) -> None:
    _registry().grant(principal, role, model)


def set_policy(rules: Iterable[Mapping[str, Any]], model: str | None = None) -> None:
    _registry().set_policy(rules, model)
