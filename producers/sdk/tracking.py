"""Runs: the tracking half of the SDK.

A :class:`Run` validates every call before anything is published, buffers
metric points and publishes them as ``MetricsLogged`` batch events from a
background thread on a short linger, so a training loop never waits on the
network. ``end()`` flushes with a bounded timeout and raises
:class:`~modelog.DeliveryError` if the broker did not acknowledge everything.
"""

from __future__ import annotations

import atexit
import contextvars
import datetime as dt
import os
import signal
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelog.sdk import datasets
from modelog.sdk.uploads import files_under as _files_under
from modelog.sdk.uploads import record_files
from modelog.wire import metric_columns
from modelog.wire import rules as _rules
from modelog.wire.errors import DeliveryError, ModelogError, ValidationError
from modelog.wire.envelope import now_micros
from modelog.wire.models import tag_texts

if TYPE_CHECKING:
    from modelog.sdk.client import Client

STATUSES = ("FINISHED", "FAILED", "KILLED")
BATCH_POINTS = 5000  # points per MetricsLogged event
MAX_DRAIN = 100_000  # points turned into events at a time
MAX_BUFFERED = 1_000_000  # log_metrics blocks (backpressure) above this many unsent points
_STEP_MAX = 2**63 - 1


def metric_batches(chunks: list[tuple[tuple, list, int, int]], n: int) -> list[dict]:
    """The ``columns`` records of the points of ``chunks`` ((names, values, step, timestamp) per call, ``n``
    points in all), BATCH_POINTS points each, in order: numpy does the per-point work."""
    np = metric_columns.np
    ids: dict[str, int] = {}  # metric name -> index in the dictionary
    patterns: dict[tuple, np.ndarray] = {}  # names of a call -> their indexes
    index_parts, counts, steps, stamps = [], [], [], []
    for names, values, st, ts in chunks:
        idx = patterns.get(names)
        if idx is None:
            idx = patterns[names] = np.array([ids.setdefault(k, len(ids)) for k in names], metric_columns.KEY_INDEX)
        index_parts.append(idx)
        counts.append(len(values))
        steps.append(st)
        stamps.append(ts)
    keys = list(ids)
    key_index = np.concatenate(index_parts) if len(index_parts) > 1 else index_parts[0]
    values = np.fromiter(chain.from_iterable(c[1] for c in chunks), metric_columns.VALUE, count=n)
    counts_a = np.array(counts, np.int64)
    step_a = np.repeat(np.array(steps, metric_columns.STEP), counts_a)
    ts_a = np.repeat(np.array(stamps, metric_columns.TIMESTAMP), counts_a)
    out = []
    for lo in range(0, n, BATCH_POINTS):
        hi = min(n, lo + BATCH_POINTS)
        ki, batch_keys = key_index[lo:hi], keys
        if len(keys) > 64:  # many names in this drain: each event's dictionary holds only its own
            used, ki = np.unique(ki, return_inverse=True)
            batch_keys = [keys[i] for i in used.tolist()]
        out.append(metric_columns.encode(batch_keys, ki, values[lo:hi], step_a[lo:hi], ts_a[lo:hi]))
    return out


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM while a run is open, so the run ends KILLED (exit code 143)."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


def _timestamp(value: Any, field: str) -> int:
    if value is None:
        return now_micros()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValidationError(field, value, "datetime must be timezone-aware")
        return int(value.timestamp() * 1_000_000)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1_000_000)
    raise ValidationError(field, value, "must be a timezone-aware datetime or seconds since the epoch")


class Run:
    """An active run. Use as a context manager, or call :meth:`end`.

    Example::

        with modelog.start_run(experiment="credit-risk", name="baseline") as run:
            run.log_params({"lr": 0.01})
            run.log_metrics({"loss": 0.3}, step=1)
    """

    def __init__(self, client: Client, run_id: str, experiment: str, name: str, subject: str | None = None) -> None:
        self._client = client
        self.id = run_id
        self.experiment = experiment
        self.name = name
        self.subject = subject  # whose personal data this run's sensitive values are (decision 0018)
        self.status = "RUNNING"
        self._params: dict[str, str] = {}
        self._metric_keys: set[str] = set()
        self._key_sets: set[tuple] = set()  # tuples of metric names already checked
        self._chunks: deque[tuple[tuple, list, int, int]] = deque()  # (names, values, step, timestamp) per call
        self._logged = 0  # points logged (the caller's thread only)
        self._sent = 0  # points handed to the emitter (under _drain_lock only)
        self._wake = threading.Event()
        self._drain_lock = threading.Lock()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._ended = False
        self._linger = client.settings.linger_ms / 1000
        self._flusher = threading.Thread(target=self._flush_loop, name=f"modelog-run-{run_id[:8]}", daemon=True)
        self._flusher.start()

    @property
    def node(self) -> str:
        """This run's lineage node id, ``run:<run_id>``."""
        return f"run:{self.id}"

    def __repr__(self) -> str:
        return f"<Run {self.id} experiment={self.experiment!r} name={self.name!r} status={self.status}>"

    # -- metrics (hot path) ------------------------------------------------------
    def log_metric(self, key: str, value: float, step: int | None = None, timestamp: Any = None) -> None:
        """Log one metric point. See :meth:`log_metrics`."""
        if (type(value) is float and timestamp is None and key in self._metric_keys and not self._ended
                and self._error is None and (step is None or (type(step) is int and 0 <= step <= _STEP_MAX))):
            self._chunks.append(((key,), [value], step or 0, now_micros()))  # checked before: the common case
            self._logged += 1
            if self._logged - self._sent >= BATCH_POINTS:
                self._wake.set()
                if self._logged - self._sent > MAX_BUFFERED:
                    self._backpressure()
            return
        self.log_metrics({key: value}, step=step, timestamp=timestamp)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, timestamp: Any = None) -> None:
        """Log metric points at ``step`` (default 0). Values: int/float/numpy scalars; NaN and inf allowed.

        Returns at once: points are published in batches in the background.
        Raises ValidationError (nothing of this call is kept) for a bad name, value or step.
        """
        if self._ended or self._error is not None:
            self._check_open()
        ts = now_micros() if timestamp is None else _timestamp(timestamp, "timestamp")
        if step is None:
            st = 0
        elif type(step) is int and 0 <= step <= _STEP_MAX:
            st = step
        else:
            try:
                st = _rules.step(step)
            except ValueError as exc:
                raise ValidationError("step", step, str(exc)) from None
        try:
            names = tuple(metrics)
            values = list(metrics.values())
        except (AttributeError, TypeError):
            raise ValidationError("metrics", metrics, "must be a mapping of metric name to number") from None
        if names not in self._key_sets:
            self._check_names(names)
        for v in values:
            if type(v) is not float:
                values = self._check_values(names, values)
                break
        # one entry per call, not per point: the flusher turns them into arrays (modelog.wire.metric_columns)
        self._chunks.append((names, values, st, ts))
        self._logged += len(values)
        if self._logged - self._sent >= BATCH_POINTS:
            self._wake.set()
            if self._logged - self._sent > MAX_BUFFERED:
                self._backpressure()

    def _check_names(self, names: tuple) -> None:
        keys = self._metric_keys
        for k in names:
            if k not in keys:
                try:
                    _rules.name(k)
                except ValueError as exc:
                    raise ValidationError("metric name", k, str(exc)) from None
                keys.add(k)
        if len(self._key_sets) >= 1024:  # a run logging ever new combinations: keep the cache small
            self._key_sets.clear()
        self._key_sets.add(names)

    @staticmethod
    def _check_values(names: tuple, values: list) -> list:
        out = []
        for k, v in zip(names, values):
            if type(v) is not float:
                try:
                    v = _rules.metric_value(v)
                except ValueError as exc:
                    raise ValidationError(f"metrics[{k!r}]", v, str(exc)) from None
            out.append(v)
        return out

    def _backpressure(self) -> None:
        while self._logged - self._sent > MAX_BUFFERED // 2 and self._error is None:
            self._wake.set()
            time.sleep(0.005)
        self._raise_pending()

    def _flush_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._linger or 0.001)
            self._wake.clear()
            try:
                self._drain()
            except BaseException as exc:  # reported on the next call or at end()
                self._error = exc
                return

    def _drain(self) -> None:
        """Publish every buffered point: as columnar MetricsLogged events of at most BATCH_POINTS points."""
        with self._drain_lock:
            chunks = self._chunks
            while chunks:
                taken = []
                n = 0
                while chunks and n < MAX_DRAIN:
                    c = chunks.popleft()
                    taken.append(c)
                    n += len(c[1])
                make = self._client.events.make
                events = [make("MetricsLogged", "run", self.id, run_id=self.id, points=[], columns=columns)
                          for columns in metric_batches(taken, n)]
                self._client.emitter.emit(events)
                self._sent += n

    # -- params, tags, artifacts ---------------------------------------------------
    def log_param(self, key: str, value: Any, *, sensitive: bool = False) -> None:
        """Log one hyperparameter. See :meth:`log_params`."""
        self.log_params({key: value}, sensitive=sensitive)

    def log_params(self, params: Mapping[str, Any], *, sensitive: bool = False) -> None:
        """Log hyperparameters. Values: str, int, float, bool or None (kept as text with their type).

        A key can be logged once per run; logging it again with another value raises ValidationError.
        Values of keys the policy marks sensitive (the ``sensitive_fields`` view), or all of them with
        ``sensitive=True``, are sealed with the run's subject's data key: the log holds only ciphertext,
        the views the plaintext until ``modelog erase --subject``. A sensitive value in a run started
        without ``subject=`` raises ValidationError (nothing is published).
        """
        self._check_open()
        if not isinstance(params, Mapping):
            raise ValidationError("params", params, "must be a mapping of param name to scalar value")
        new = []
        for k, v in params.items():
            try:
                _rules.name(k)
            except ValueError as exc:
                raise ValidationError("param name", k, str(exc)) from None
            try:
                text, typ = _rules.param_text(v)
                _rules.param_value(text)
            except ValueError as exc:
                raise ValidationError(f"params[{k!r}]", v, str(exc)) from None
            old = self._params.get(k)
            if old is not None and old != text:
                raise ValidationError(f"params[{k!r}]", v, f"already logged for this run as {old!r}; params are immutable")
            if old is None:
                new.append({"key": k, "value": text, "value_type": typ})
        if new:
            sealed = self._client.sealer.seal_params(new, self.subject, sensitive)
            self._client.publish("ParamsLogged", "run", self.id, run_id=self.id, params=sealed)
            for p in new:
                self._params[p["key"]] = p["value"]

    def set_tag(self, key: str, value: Any, *, sensitive: bool = False) -> None:
        """Set one tag. See :meth:`set_tags`."""
        self.set_tags({key: value}, sensitive=sensitive)

    def set_tags(self, tags: Mapping[str, Any], *, sensitive: bool = False) -> None:
        """Set tags (values are converted with ``str``). A later value for a key replaces the earlier one.
        Sensitive values are sealed as in :meth:`log_params`."""
        self._check_open()
        if not isinstance(tags, Mapping):
            raise ValidationError("tags", tags, "must be a mapping of tag name to text")
        if tags:
            texts = self._client.sealer.seal_tags(tag_texts(tags), self.subject, sensitive)
            self._client.publish("TagsSet", "run", self.id, run_id=self.id, tags=texts)

    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None, *,
                     store: bool = True) -> list[dict]:
        """Record a file (or every file under a directory, under its name) produced by this run, and store it.

        Records sha256, size, media type and the ``file://`` URI it was logged from. With ``store=True``
        (default) the bytes go to the artifact store (``MODELOG_ARTIFACT_URI``, else the embedded broker's
        S3 server), content-addressed by sha256, from a background thread: the ``ArtifactLogged`` event, with
        its ``content_address``, is published once they are stored; ``run.flush()`` and ``end_run`` wait for
        the uploads and raise DeliveryError if one failed. Do not change the file before then (an upload of
        a file that changed since it was hashed fails). ``store=False`` records the reference only: the
        bytes stay where they are. ``artifact_path`` is its name in the run (default: the file name).
        Returns the recorded artifacts (``content_address`` where the bytes will be).

        Raises ValidationError for a missing file or a path that could escape the run (``..``, ``%2e%2e``,
        absolute, ``file:``), ConfigError when there is no artifact store (nothing is recorded then).

        Example::

            run.log_artifact("model.pkl")                      # stored; end_run waits for the upload
            run.log_artifact("data/raw.parquet", store=False)  # a reference only
        """
        self._check_open()
        src = Path(local_path)
        if not src.exists():
            raise ValidationError("local_path", str(local_path), "must be an existing file or directory")
        base = artifact_path or src.name
        if src.is_file():
            return self._log_files([(src, base)], store)
        return self._log_files([(f, f"{base}/{f.relative_to(src).as_posix()}") for f in _files_under(src)], store)

    def log_artifacts(self, local_dir: str | os.PathLike, artifact_path: str | None = None, *,
                      store: bool = True) -> list[dict]:
        """Record and store every file under the directory ``local_dir``, at ``artifact_path/<relative path>``
        (default: at the run's top level, as MLflow's ``log_artifacts``). See :meth:`log_artifact`.

        Example::

            run.log_artifacts("outputs/", artifact_path="model")   # model/weights.bin, model/config.json ...
        """
        self._check_open()
        src = Path(local_dir)
        if not src.is_dir():
            raise ValidationError("local_dir", str(local_dir), "must be an existing directory")
        prefix = f"{artifact_path.rstrip('/')}/" if artifact_path else ""
        return self._log_files([(f, prefix + f.relative_to(src).as_posix()) for f in _files_under(src)], store)

    def _log_files(self, files: list[tuple[Path, str]], store: bool) -> list[dict]:
        return record_files(self._client, self.id, files, store)

    def log_dataset(self, name: str, data: Any, role: str = "train", *, description: str | None = None,
                    tags: Mapping[str, Any] | None = None, uri: str | None = None) -> Any:
        """Record that this run used a dataset: a file, a directory, a pandas DataFrame or a pyarrow Table.

        The version is the content's sha256 (the same content is the same version); schema, row count,
        size and URI are recorded, plus the lineage edge ``dataset:<name>@<version> --consumed--> run:<id>``
        with ``role`` (train, validation, test, ...). Returns the :class:`modelog.DatasetVersion`.
        Raises ValidationError (nothing published) for a bad name, role, tag, URI or unreadable data.

        Example::

            train = run.log_dataset("credit-applications", "data/train.csv", role="train")
            train.node   # 'dataset:credit-applications@3f2a...'
        """
        return datasets.log_dataset(self, name, data, role, description=description, tags=tags, uri=uri)

    # -- lifecycle -----------------------------------------------------------------
    def register_model(self, model: str, *, artifact: str | None = None, uri: str | None = None,
                       semver: str | None = None, description: str | None = None,
                       tags: Mapping[str, Any] | None = None, wait: bool = True, timeout: float = 30.0):
        """Register a version of ``model`` produced by this run; returns a ModelVersion with its number.

        Works during the run and after it ended (register once the evaluation is in).

        Example::

            mv = run.register_model("credit-risk", artifact="model.pkl", semver="1.2.0")
            print(mv.version)
        """
        if not self._ended:
            self.flush()
        return self._client.registry.register_model(model, run_id=self.id, artifact=artifact, uri=uri,
                                                    semver=semver, description=description, tags=tags,
                                                    wait=wait, timeout=timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Publish buffered points now, wait for this run's artifact uploads, and until the broker
        acknowledged everything. Raises DeliveryError (a failed upload is named)."""
        self._raise_pending()
        self._drain()
        self._wait_uploads(timeout)
        self._client.emitter.flush(timeout)

    def _publish_buffered(self, raise_pending: bool = True) -> None:
        """Hand every buffered point to the emitter now (``Client.flush``, ``Client.close``); raises a failure
        of the background publisher (``raise_pending=False``: leaves it to the run's ``end``, publishing nothing)."""
        if self._ended:
            return
        if self._error is not None and not raise_pending:
            return
        self._raise_pending()
        self._drain()

    def _wait_uploads(self, timeout: float | None) -> None:
        uploads = self._client._uploads
        if uploads is not None:
            uploads.wait(self.id, timeout if timeout is not None else self._client.settings.flush_timeout)

    def end(self, status: str = "FINISHED", error: str | None = None, timeout: float | None = None) -> None:
        """End the run: wait for its artifact uploads, flush every buffered point, publish RunEnded, wait for
        delivery (bounded).

        Raises DeliveryError if any event of this run was not acknowledged, or an artifact of it could not be
        stored (RunEnded is published all the same). Calling it twice is a no-op.
        """
        if status not in STATUSES:
            raise ValidationError("status", status, f"must be one of {', '.join(STATUSES)}")
        if self._ended:
            return
        self._ended = True
        self.status = status
        self._stop.set()
        self._wake.set()
        self._flusher.join(timeout=5)
        upload_error: DeliveryError | None = None
        try:
            self._wait_uploads(timeout)
        except DeliveryError as exc:  # the run still ends; the failure is raised below
            upload_error = exc
        try:
            self._raise_pending()
            self._drain()
            self._client.publish("RunEnded", "run", self.id, run_id=self.id, status=status,
                                 end_time=now_micros(), error=error[:8000] if error else None)
            self._client.emitter.flush(timeout)
        finally:
            self._client._run_ended(self)
        if upload_error is not None:
            raise upload_error

    def _raise_pending(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            if isinstance(err, DeliveryError):
                raise err
            raise DeliveryError(f"publishing metrics of run {self.id} failed: {err}") from err

    def _check_open(self) -> None:
        if self._ended:
            raise ModelogError(f"run {self.id} has ended ({self.status}); start a new run to log more")
        if self._error is not None:
            self._raise_pending()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.end("FINISHED")
        elif issubclass(exc_type, (KeyboardInterrupt, Terminated)):
            self.end("KILLED", error=exc_type.__name__)
        elif issubclass(exc_type, SystemExit) and exc.code in (0, None):
            self.end("FINISHED")
        else:
            self.end("FAILED", error=f"{exc_type.__name__}: {exc}")


# -- the active run of this context, runs still open at exit -------------------------------

_active: contextvars.ContextVar[Run | None] = contextvars.ContextVar("modelog_active_run", default=None)
_open_runs: weakref.WeakSet[Run] = weakref.WeakSet()


def active_run() -> Run | None:
    """The active run of this context, or None."""
    run = _active.get()
    return run if run is not None and not run._ended else None


def activate(run: Run) -> None:
    """Make ``run`` the active run of this context; it is ended at exit if still open."""
    _active.set(run)
    _open_runs.add(run)
    _install_sigterm()


def deactivate(run: Run) -> None:
    if _active.get() is run:
        _active.set(None)
    _open_runs.discard(run)


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
