"""Artifact uploads off the training loop: one background thread per client stores the bytes, then
publishes the ``ArtifactLogged`` event with the content address.

``Run.log_artifact`` checks and hashes the file, hands it here and returns. The event is published
only once the bytes are in the store, so an ``ArtifactLogged`` with a ``content_address`` always
names an object that is there. ``wait(run_id)`` (``run.flush()``, ``end_run``) blocks until the
run's uploads are done and raises :class:`~modelog.DeliveryError` if one failed, or if none made
progress for ``MODELOG_FLUSH_TIMEOUT`` seconds (a stalled store; a large file that keeps moving is
waited for: docs/decisions/0013-artifact-store.md). Under ``MODELOG_URL`` without a store of its own the
bytes go through the server (:mod:`modelog.sdk.http_artifacts`), which logs the event once it stored them.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelog.wire import rules as _rules
from modelog.wire.errors import DeliveryError, ValidationError

if TYPE_CHECKING:
    from modelog.sdk.client import Client
    from modelog.wire.artifact_store import ArtifactStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upload:
    """One file to store for a run, and the event to publish once it is stored."""

    run_id: str
    file: Path
    path: str  # the artifact's path in the run
    uri: str
    sha256: str
    size_bytes: int
    media_type: str


class Uploads:
    """The client's upload queue and its thread (started on the first upload)."""

    def __init__(self, client: Client, store: ArtifactStore) -> None:
        self._client = client
        self.store = store
        self._queue: queue.Queue[Upload] = queue.Queue()
        self._cond = threading.Condition()
        self._pending: dict[str, int] = {}  # run_id -> uploads not finished
        self._failures: dict[str, list[tuple[str, str]]] = {}  # run_id -> (artifact path, reason)
        self._progress_at = time.monotonic()
        self._thread: threading.Thread | None = None

    def submit(self, upload: Upload) -> None:
        with self._cond:
            self._pending[upload.run_id] = self._pending.get(upload.run_id, 0) + 1
            self._progress_at = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="modelog-uploads", daemon=True)
                self._thread.start()
        self._queue.put(upload)

    def pending(self, run_id: str) -> int:
        with self._cond:
            return self._pending.get(run_id, 0)

    def wait(self, run_id: str, stall_timeout: float) -> None:
        """Block until every upload of ``run_id`` is done. Raises DeliveryError naming each failed artifact
        (once: the failures are then forgotten), or when no upload moved for ``stall_timeout`` seconds."""
        with self._cond:
            while self._pending.get(run_id, 0) > 0:
                idle = time.monotonic() - self._progress_at
                if idle >= stall_timeout:
                    raise DeliveryError(
                        f"artifact uploads of run {run_id}: {self._pending[run_id]} not stored in {self.store.root}; "
                        f"no progress for {stall_timeout:g} s (MODELOG_FLUSH_TIMEOUT)",
                        [("ArtifactLogged", "upload stalled")])
                self._cond.wait(min(0.5, stall_timeout - idle))
            failures = self._failures.pop(run_id, [])
        if failures:
            listed = "; ".join(f"{path}: {reason}" for path, reason in failures)
            raise DeliveryError(f"storing {len(failures)} artifact(s) of run {run_id} failed: {listed}",
                                [("ArtifactLogged", f"{path}: {reason}") for path, reason in failures])

    def _moved(self, _bytes_done: int) -> None:
        with self._cond:
            self._progress_at = time.monotonic()

    def _work(self) -> None:
        while True:
            up = self._queue.get()
            try:
                if getattr(self.store, "publishes", False):  # through a modelog server: it stores and logs
                    self._client.emitter.flush()  # the run's earlier events first (RunStarted), in log order
                    self.store.upload(up, progress=self._moved)
                    continue
                address = self.store.put_file(up.file, up.sha256, up.size_bytes, progress=self._moved)
                self._client.publish("ArtifactLogged", "run", up.run_id, run_id=up.run_id, path=up.path, uri=up.uri,
                                     sha256=up.sha256, size_bytes=up.size_bytes, media_type=up.media_type,
                                     content_address=address)
            except Exception as exc:  # noqa: BLE001 -- any failure is the run's: wait() raises it as DeliveryError
                log.warning("storing artifact %r of run %s failed: %s", up.path, up.run_id, exc)
                with self._cond:
                    self._failures.setdefault(up.run_id, []).append((up.path, f"{type(exc).__name__}: {exc}"))
            finally:
                with self._cond:
                    self._pending[up.run_id] -= 1
                    if not self._pending[up.run_id]:
                        del self._pending[up.run_id]
                    self._progress_at = time.monotonic()
                    self._cond.notify_all()


def files_under(directory: Path) -> list[Path]:
    """Every file under ``directory``, sorted."""
    return sorted(p for p in directory.rglob("*") if p.is_file())


def record_files(client: Client, run_id: str, files: list[tuple[Path, str]], store: bool) -> list[dict]:
    """Record ``(file, artifact path)`` pairs for run ``run_id``: hashed here; with ``store`` queued for the
    upload thread (which publishes ``ArtifactLogged`` once stored), else published at once as a reference.

    Every path is checked (:func:`modelog.wire.rules.stored_artifact_path`) before anything is stored or
    published. Raises ValidationError for a bad path, ConfigError (``store``) when there is no store.
    """
    for _, name in files:
        try:
            _rules.stored_artifact_path(name)
        except ValueError as exc:
            raise ValidationError("artifact_path", name, str(exc)) from None
    uploads = client.uploads if store else None  # ConfigError here: no artifact store
    recorded = []
    for f, name in files:
        digest, size = _sha256(f)
        media = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        art = {"path": name, "uri": f.resolve().as_uri(), "sha256": digest, "size_bytes": size, "media_type": media}
        if uploads is None:
            client.publish("ArtifactLogged", "run", run_id, run_id=run_id, **art, content_address=None)
            recorded.append({**art, "content_address": None})
        else:
            uploads.submit(Upload(run_id, f, **art))
            recorded.append({**art, "content_address": uploads.store.address(digest)})
    return recorded


def _sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size
