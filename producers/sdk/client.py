"""The client: settings + emitter + event factory; every SDK verb publishes through one.

``modelog.Client(settings, emitter=...)`` gives an explicit client (tests use
``MemoryEmitter``); the module-level verbs (``modelog.start_run`` ...) use a
process-wide default one, kept in :mod:`modelog.sdk.fluent`. The active run lives
in a ``contextvars.ContextVar`` in :mod:`modelog.sdk.tracking`.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from modelog.consumers.query import wait_projected
from modelog.sdk import datasets, tracking
from modelog.sdk.environment import capture as capture_environment
from modelog.sdk.privacy import Sealer
from modelog.sdk.registry import Registry
from modelog.sdk.tracking import Run
from modelog.sdk.uploads import Uploads
from modelog.wire.artifact_store import ArtifactStore
from modelog.wire import rules as _rules
from modelog.wire.emitter import Emitter, KafkaEmitter
from modelog.wire.envelope import EventFactory, now_micros
from modelog.wire.errors import ModelogError, ValidationError
from modelog.wire.ids import new_run_id
from modelog.wire.keystore import check_subject
from modelog.wire.models import tag_texts, validate
from modelog.wire.settings import Settings


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
        self._uploads: Uploads | None = None
        self._runs: weakref.WeakSet[Run] = weakref.WeakSet()  # the runs started here and not ended yet
        self.sealer = Sealer(self)  # sensitive params and tags: the policy and the data keys (decision 0018)

    @property
    def emitter(self) -> Emitter:
        if self._emitter is None:
            with self._lock:
                if self._emitter is None:
                    if self.settings.url:  # MODELOG_URL: through a modelog server's API, not the broker
                        from modelog.sdk.http_emitter import HttpEmitter

                        self._emitter = HttpEmitter(self.settings)
                    else:
                        self._emitter = KafkaEmitter(self.settings)
        return self._emitter

    @property
    def registry(self) -> Registry:
        """Model registry verbs (register, promote, aliases, approvals, deployments, roles, policies)."""
        if self._registry is None:
            self._registry = Registry(self)
        return self._registry

    @property
    def uploads(self) -> Uploads:
        """The background uploads of artifacts to the artifact store (raises ConfigError if there is none):
        ``MODELOG_ARTIFACT_URI``, else through the server with ``MODELOG_URL``, else the embedded S3 server."""
        if self._uploads is None:
            with self._lock:
                if self._uploads is None:
                    if self.settings.url and not self.settings.artifact_uri:  # through the server's API
                        from modelog.sdk.http_artifacts import ServerArtifacts

                        self._uploads = Uploads(self, ServerArtifacts(self.settings))
                    else:
                        self._uploads = Uploads(self, ArtifactStore.from_settings(self.settings))
        return self._uploads

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
                  *, run_id: str | None = None, environment: bool = True, subject: str | None = None) -> Run:
        """Start a run and make it the active one. See :func:`modelog.start_run`."""
        current = tracking.active_run()
        if current is not None:
            raise ModelogError(f"run {current.id} is already active; end it first (modelog.end_run())")
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
        if subject is not None:
            check_subject(subject)
        texts = tag_texts(tags or {})
        if texts:
            texts = self.sealer.seal_tags(texts, subject)
        env = capture_environment() if environment else _EMPTY_ENV
        self.create_experiment(experiment)
        started = self.events.make("RunStarted", "run", rid, run_id=rid, experiment=experiment, name=run_name,
                                   start_time=now_micros(), tags=texts, environment=env)
        validate("RunStarted", started.record)
        self.emitter.emit([started])
        run = Run(self, rid, experiment, run_name, subject)
        self._runs.add(run)
        tracking.activate(run)
        return run

    def _run_ended(self, run: Run) -> None:
        self._runs.discard(run)
        tracking.deactivate(run)

    def flush(self, timeout: float | None = None) -> None:
        """Publish the points the open runs of this client still buffer, then wait until the broker
        acknowledged every event published before (bounded by ``timeout``, default ``MODELOG_FLUSH_TIMEOUT``).

        Raises DeliveryError if one was not acknowledged, or a run's background publishing failed.
        Artifact uploads are not waited for: ``run.flush()`` does that.
        """
        for run in list(self._runs):
            run._publish_buffered()
        self.emitter.flush(timeout)

    def wait_projected(self, timeout: float = 30.0) -> float:
        """Flush, then block until the views hold every event this client published (read-your-writes).

        Returns the seconds waited for the processor. Raises QueryError on timeout.
        """
        self.flush()
        positions = dict(getattr(self.emitter, "positions", {}))
        if self.settings.url:  # through the server: it reports how far its views have projected
            from modelog.sdk.http_emitter import wait_projected as wait_through_api

            return wait_through_api(self.settings, positions, timeout)
        return wait_projected(self.settings, positions, timeout)

    def close(self) -> None:
        """Publish what open runs still buffer, wait for the broker (as :meth:`flush`) and release the
        connection. Raises DeliveryError if something was not acknowledged; the client is closed either way. A
        run whose background publishing failed keeps that error for its ``end``."""
        try:
            for run in list(self._runs):
                run._publish_buffered(raise_pending=False)
        finally:
            if self._emitter is not None:
                self._emitter.close()

    def register_dataset(self, name: str, data: Any, *, description: str | None = None,
                         tags: dict[str, Any] | None = None, uri: str | None = None, derived_from: Any = None,
                         transform: str | None = None, code_ref: str | None = None,
                         subject: str | None = None) -> Any:
        """Record a dataset version outside any run. See :func:`modelog.register_dataset`."""
        return datasets.register_dataset(self, name, data, description=description, tags=tags, uri=uri,
                                         derived_from=derived_from, transform=transform, code_ref=code_ref,
                                         subject=subject)

    def record_lineage(self, src: Any, relation: str, dst: Any, *, role: str | None = None,
                       transform: str | None = None, code_ref: str | None = None) -> None:
        """Record one lineage edge. See :func:`modelog.record_lineage`."""
        datasets.record_lineage(self, src, relation, dst, role=role, transform=transform, code_ref=code_ref)


_EMPTY_ENV = {"python_version": "", "python_implementation": "", "platform": "", "hostname": "", "cpu_count": 0,
              "working_dir": ""}
