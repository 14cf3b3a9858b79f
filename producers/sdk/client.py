"""The client: settings + emitter + event factory, and the module-level verbs built on it.

``modelog.start_run(...)`` uses a process-wide default client built from the
environment on first use; ``modelog.Client(settings, emitter=...)`` gives an
explicit one (tests use ``MemoryEmitter``). The active run lives in a
``contextvars.ContextVar``.
"""

from __future__ import annotations

import atexit
import contextvars
import signal
import sys
import threading
import weakref
from typing import Any

from . import _environment, _rules
from ._config import Settings
from ._emitter import Emitter, KafkaEmitter
from ._errors import ModelogError, NoActiveRunError, ValidationError
from ._events import EventFactory, now_micros
from ._ids import new_run_id
from ._models import validate
from ._registry import Registry
from ._run import Run, Terminated, _tag_texts

_active: contextvars.ContextVar[Run | None] = contextvars.ContextVar("modelog_active_run", default=None)
_open_runs: weakref.WeakSet[Run] = weakref.WeakSet()


class Client:
    """Publishes modelog events. Thread-safe; one per process is enough."""

    def __init__(self, settings: Settings | None = None, emitter: Emitter | None = None,
                 program: str = "modelog-sdk") -> None:
        self.settings = settings or Settings.load()
        self.events = EventFactory(self.settings, program)
        self._emitter = emitter
        self._lock = threading.Lock()
        self._experiments: set[str] = set()
        self._registry: Registry | None = None

    @property
    def emitter(self) -> Emitter:
        if self._emitter is None:
            with self._lock:
                if self._emitter is None:
                    self._emitter = KafkaEmitter(self.settings)
        return self._emitter

    @property
    def registry(self) -> Registry:
        """Model registry verbs (register, promote, aliases, approvals, deployments, roles, policies)."""
        if self._registry is None:
            self._registry = Registry(self)
        return self._registry

    def publish(self, event_type: str, entity_type: str, key: str, **payload: Any) -> None:
        """Validate one event against its schema's rules, then emit it (non-blocking)."""
        event = self.events.make(event_type, entity_type, key, **payload)
        validate(event_type, event.record)
        self.emitter.emit([event])

    def create_experiment(self, name: str, description: str | None = None) -> None:
        """Declare an experiment (idempotent: the experiments view keeps the first declaration)."""
        try:
            _rules.name(name)
        except ValueError as exc:
            raise ValidationError("experiment", name, str(exc)) from None
        if name in self._experiments and description is None:
            return
        self.publish("ExperimentCreated", "experiment", name, experiment=name, description=description)
        self._experiments.add(name)

    def start_run(self, experiment: str = "default", name: str | None = None, tags: dict[str, Any] | None = None,
                  *, run_id: str | None = None, environment: bool = True) -> Run:
        """Start a run and make it the active one. See :func:`modelog.start_run`."""
        if _active.get() is not None and not _active.get()._ended:
            raise ModelogError(f"run {_active.get().id} is already active; end it first (modelog.end_run())")
        try:
            _rules.name(experiment)
        except ValueError as exc:
            raise ValidationError("experiment", experiment, str(exc)) from None
        rid = run_id or new_run_id()
        try:
            _rules.ident(rid)
        except ValueError as exc:
            raise ValidationError("run_id", rid, str(exc)) from None
        run_name = name if name is not None else f"run-{rid[-8:]}"
        try:
            _rules.name(run_name)
        except ValueError as exc:
            raise ValidationError("name", run_name, str(exc)) from None
        tag_texts = _tag_texts(tags or {})
        env = _environment.capture() if environment else _EMPTY_ENV
        self.create_experiment(experiment)
        started = self.events.make("RunStarted", "run", rid, run_id=rid, experiment=experiment, name=run_name,
                                   start_time=now_micros(), tags=tag_texts, environment=env)
        validate("RunStarted", started.record)
        self.emitter.emit([started])
        run = Run(self, rid, experiment, run_name)
        _active.set(run)
        _open_runs.add(run)
        _install_sigterm()
        return run

    def _run_ended(self, run: Run) -> None:
        if _active.get() is run:
            _active.set(None)
        _open_runs.discard(run)

    def flush(self, timeout: float | None = None) -> None:
        self.emitter.flush(timeout)

    def wait_projected(self, timeout: float = 30.0) -> float:
        """Flush, then block until the views hold every event this client published (read-your-writes).

        Returns the seconds waited for the processor. Raises QueryError on timeout.
        """
        from ._query import wait_projected

        self.emitter.flush()
        positions = dict(getattr(self.emitter, "positions", {}))
        return wait_projected(self.settings, positions, timeout)

    def close(self) -> None:
        if self._emitter is not None:
            self._emitter.close()

    def register_dataset(self, name: str, data: Any, *, description: str | None = None,
                         tags: dict[str, Any] | None = None, uri: str | None = None, derived_from: Any = None,
                         transform: str | None = None, code_ref: str | None = None) -> Any:
        """Record a dataset version outside any run. See :func:`modelog.register_dataset`."""
        from ._datasets import register_dataset

        return register_dataset(self, name, data, description=description, tags=tags, uri=uri,
                                derived_from=derived_from, transform=transform, code_ref=code_ref)

    def record_lineage(self, src: Any, relation: str, dst: Any, *, role: str | None = None,
                       transform: str | None = None, code_ref: str | None = None) -> None:
        """Record one lineage edge. See :func:`modelog.record_lineage`."""
        from ._datasets import record_lineage

        record_lineage(self, src, relation, dst, role=role, transform=transform, code_ref=code_ref)


_EMPTY_ENV = {"python_version": "", "python_implementation": "", "platform": "", "hostname": "", "cpu_count": 0,
              "working_dir": ""}

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


# -- SIGTERM and interpreter exit ----------------------------------------------------

_sigterm_installed = False
_terminated = False


def _on_sigterm(signum, frame) -> None:
    global _terminated
    _terminated = True
    raise Terminated()


def _install_sigterm() -> None:
    """On SIGTERM, raise Terminated in the main thread so open runs end KILLED (only if no handler is set)."""
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)
    _sigterm_installed = True


@atexit.register
def _end_open_runs() -> None:
    last = getattr(sys, "last_value", None)
    for run in list(_open_runs):
        if run._ended:
            continue
        if _terminated or isinstance(last, (KeyboardInterrupt, Terminated)):
            status, error = "KILLED", "Terminated" if _terminated else type(last).__name__
        elif last is not None:
            status, error = "FAILED", f"{type(last).__name__}: {last}"
        else:
            status, error = "FINISHED", None
        try:
            run.end(status, error=error)
        except ModelogError as exc:
            print(f"modelog: could not end run {run.id}: {exc}", file=sys.stderr)


# -- module-level verbs for the active run -------------------------------------------

def active_run() -> Run | None:
    """The active run of this context, or None."""
    run = _active.get()
    return run if run is not None and not run._ended else None


def _require_run() -> Run:
    run = active_run()
    if run is None:
        raise NoActiveRunError("no active run: call modelog.start_run(...) first")
    return run


def start_run(experiment: str = "default", name: str | None = None, tags: dict[str, Any] | None = None,
              *, run_id: str | None = None) -> Run:
    """Start a run in ``experiment`` and make it active; use it as a context manager.

    Records the environment (Python, platform, packages, git, host, CPUs, GPUs, command).
    Raises ValidationError for a bad experiment/name/tags, ModelogError if a run is already active.

    Example::

        with modelog.start_run(experiment="credit-risk", name="baseline", tags={"team": "risk"}) as run:
            run.log_metrics({"loss": 0.1}, step=1)
    """
    return default_client().start_run(experiment, name, tags, run_id=run_id)


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


def log_param(key: str, value: Any) -> None:
    _require_run().log_param(key, value)


def log_params(params: dict[str, Any]) -> None:
    _require_run().log_params(params)


def set_tag(key: str, value: Any) -> None:
    _require_run().set_tag(key, value)


def set_tags(tags: dict[str, Any]) -> None:
    _require_run().set_tags(tags)


def log_artifact(local_path: str, artifact_path: str | None = None) -> list[dict]:
    return _require_run().log_artifact(local_path, artifact_path)


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
                     code_ref: str | None = None) -> Any:
    """Record a dataset version (no run needed), optionally derived from other dataset versions.

    ``data``: a file or directory path, a pandas DataFrame or a pyarrow Table; its sha256 content
    hash is the version. ``derived_from``: DatasetVersions or ``dataset:<name>@<version>`` ids, made
    into this one by ``transform`` (a name) whose code is at ``code_ref`` (e.g. ``git:<commit>:etl/clean.py``).
    Returns the :class:`DatasetVersion`. Raises ValidationError (nothing published) for bad input.

    Example::

        raw = modelog.register_dataset("applications-raw", "raw.csv")
        clean = modelog.register_dataset("applications", clean_df, derived_from=[raw], transform="dedupe")
    """
    return default_client().register_dataset(name, data, description=description, tags=tags, uri=uri,
                                              derived_from=derived_from, transform=transform, code_ref=code_ref)


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
