"""The artifact store: an artifact's bytes, content-addressed by sha256, in S3 or a local directory.

One object per distinct content, at ``<root>/sha256/<hex>``; that URI is the artifact's *content
address*, carried by its ``ArtifactLogged`` event. The root is ``MODELOG_ARTIFACT_URI``
(``s3://bucket/prefix`` on any S3-compatible store, or ``file:///a/directory``), else the embedded
broker's S3 server under ``MODELOG_HOME`` with a bucket of its own (``s3://modelog-artifacts``).
The client is obstore (decision 0013): streaming multipart uploads with a bounded part size and
concurrency, streaming reads, and S3 and local directories behind one interface.

* ``put_file`` stores a file whose sha256 the caller computed: nothing is sent when the object is
  already there (same content, stored once); a file larger than one part is streamed in parts of
  ``part_size`` (at most ``concurrency`` parts in memory), and the bytes sent are hashed on the way:
  if they are not the announced content (the file changed meanwhile) the upload is aborted, so an
  object never holds other bytes than its name says.
* ``download`` / ``chunks`` read back and check: a missing object or other bytes than the sha256
  raise :class:`~modelog.wire.errors.ArtifactError` naming the run, the path, the expected and the
  actual sha256; a download is written beside its destination and renamed into place only once checked.

Example::

    store = ArtifactStore.from_settings(settings)
    address = store.put_file(Path("model.pkl"), sha256, size)
    store.download(sha256, Path("out/model.pkl"), run_id=run_id, path="model.pkl")
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from modelog.wire.errors import ArtifactError, ConfigError
from modelog.wire.home import embedded_s3_endpoint

if TYPE_CHECKING:
    from modelog.wire.settings import Settings

ARTIFACT_BUCKET = "modelog-artifacts"  # the embedded S3 server's bucket for artifacts (the log has its own)
EMBEDDED_ROOT = f"s3://{ARTIFACT_BUCKET}"
PART_SIZE = 8 * 1024 * 1024  # bytes per part of a multipart upload (S3's minimum is 5 MiB, but for the last)
CONCURRENCY = 4  # parts in flight at once: an upload holds at most about PART_SIZE * CONCURRENCY in memory
READ_SIZE = 1024 * 1024  # bytes read from a file, or asked of a download, at a time


def _sha256_key(sha256: str) -> str:
    return f"sha256/{sha256}"


class ArtifactStore:
    """Content-addressed bytes under ``root`` (``s3://bucket[/prefix]`` or ``file:///dir``)."""

    def __init__(self, root: str, store: Any, *, part_size: int = PART_SIZE, concurrency: int = CONCURRENCY) -> None:
        self.root = root.rstrip("/")
        self._store = store
        self.part_size = part_size
        self.concurrency = concurrency

    def __repr__(self) -> str:
        return f"<ArtifactStore {self.root}>"

    # -- where ----------------------------------------------------------------------------
    @classmethod
    def from_settings(cls, settings: Settings, **kw: Any) -> ArtifactStore:
        """The store artifacts are logged to: ``MODELOG_ARTIFACT_URI``, else the embedded S3 server.

        Raises ConfigError when neither is there (with what to do about it).
        """
        if settings.artifact_uri:
            return cls.open(settings.artifact_uri, settings, **kw)
        endpoint = embedded_s3_endpoint(settings.home)
        if endpoint is None:
            raise ConfigError(
                "MODELOG_ARTIFACT_URI: no artifact store: it is unset and the embedded broker's S3 server is not "
                f"running under {settings.home}. Set MODELOG_ARTIFACT_URI=s3://bucket/prefix (or file:///dir), "
                "run `modelog broker start`, or log a reference only with store=False (--no-store)")
        return cls(EMBEDDED_ROOT, _s3(ARTIFACT_BUCKET, None, {"endpoint": endpoint, **_LOCAL_CREDENTIALS}), **kw)

    @classmethod
    def open(cls, root: str, settings: Settings, **kw: Any) -> ArtifactStore:
        """The store at ``root``: ``file:///dir`` or ``s3://bucket[/prefix]`` (endpoint and credentials from
        ``settings.artifact_options``, the standard AWS_* variables)."""
        parts = urlsplit(root)
        if parts.scheme == "file":
            from obstore.store import LocalStore

            directory = Path(unquote(parts.path))
            directory.mkdir(parents=True, exist_ok=True)
            return cls(root, LocalStore(directory), **kw)
        if parts.scheme == "s3" and parts.netloc:
            return cls(root, _s3(parts.netloc, parts.path.strip("/") or None, dict(settings.artifact_options)), **kw)
        raise ConfigError(f"MODELOG_ARTIFACT_URI: must be s3://bucket[/prefix] or file:///directory (got {root!r})")

    @classmethod
    def for_address(cls, settings: Settings, address: str, **kw: Any) -> tuple[ArtifactStore, str]:
        """The store holding the object at content address ``address``, and the sha256 it names."""
        root, sep, sha256 = address.rpartition("/sha256/")
        if not sep or len(sha256) != 64:
            raise ArtifactError(f"not a content address: {address!r} (expected <store>/sha256/<64 hex digits>)")
        configured = (settings.artifact_uri or EMBEDDED_ROOT).rstrip("/")
        if root == configured:
            return cls.from_settings(settings, **kw), sha256
        if root == EMBEDDED_ROOT:  # logged on the embedded default, read where MODELOG_ARTIFACT_URI points elsewhere
            return cls.from_settings(settings.replace(artifact_uri=None), **kw), sha256
        return cls.open(root, settings, **kw), sha256

    def address(self, sha256: str) -> str:
        """The content address of the object holding ``sha256``."""
        return f"{self.root}/{_sha256_key(sha256)}"

    # -- write ----------------------------------------------------------------------------
    def has(self, sha256: str, size: int) -> bool:
        """Whether the object for ``sha256`` is there (with ``size`` bytes)."""
        import obstore

        try:
            return obstore.head(self._store, _sha256_key(sha256))["size"] == size
        except FileNotFoundError:
            return False
        except Exception as exc:  # obstore's errors (network, permission): the boundary translates them
            raise ArtifactError(f"artifact store {self.root}: cannot look up sha256 {sha256}: {exc}") from exc

    def put_file(self, path: Path, sha256: str, size: int, progress: Callable[[int], None] | None = None) -> str:
        """Store the file at ``path`` whose content is ``sha256`` / ``size``; return its content address.

        Sends nothing when the object is already stored. Raises ArtifactError if the file's bytes are not
        ``sha256`` any more (it changed since it was hashed: the upload is aborted) or the store fails.
        """
        import obstore

        if self.has(sha256, size):
            if progress is not None:
                progress(size)
            return self.address(sha256)
        key = _sha256_key(sha256)
        try:
            if size <= self.part_size:  # one request; the bytes are checked before they are sent
                data = path.read_bytes()
                _check_same(path, sha256, size, hashlib.sha256(data).hexdigest(), len(data))
                obstore.put(self._store, key, data, use_multipart=False)
                if progress is not None:
                    progress(size)
            else:
                obstore.put(self._store, key, _verified_chunks(path, sha256, size, progress), use_multipart=True,
                            chunk_size=self.part_size, max_concurrency=self.concurrency)
        except ArtifactError:
            raise
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and not path.exists():
                raise ArtifactError(f"{path}: the file is gone; it was removed before it was stored") from exc
            raise ArtifactError(f"artifact store {self.root}: storing {path} failed: {exc}") from exc
        except Exception as exc:  # obstore's errors, translated at the boundary
            raise ArtifactError(f"artifact store {self.root}: storing {path} failed: {exc}") from exc
        return self.address(sha256)

    # -- read -----------------------------------------------------------------------------
    def chunks(self, sha256: str, *, run_id: str | None = None, path: str | None = None) -> Iterator[bytes]:
        """The stored bytes of ``sha256``, streamed, unchecked (callers hash them: see :func:`checked`).

        Raises ArtifactError when the object is missing or the store cannot be read.
        """
        import obstore

        what = _what(run_id, path)
        try:
            result = obstore.get(self._store, _sha256_key(sha256))
        except FileNotFoundError as exc:
            raise ArtifactError(f"{what}: its stored object {self.address(sha256)} is missing (expected sha256 "
                                f"{sha256})", run_id=run_id, path=path, expected=sha256) from exc
        except Exception as exc:  # obstore's errors, translated at the boundary
            raise ArtifactError(f"{what}: cannot read {self.address(sha256)}: {exc}", run_id=run_id, path=path,
                                expected=sha256) from exc
        return _stream(result, self.address(sha256), what, run_id, path, sha256)

    def download(self, sha256: str, dest: Path, *, run_id: str | None = None, path: str | None = None) -> Path:
        """Write the object of ``sha256`` to ``dest``, checked; returns ``dest``.

        The bytes go to a temporary file beside ``dest`` and replace it only once their sha256 matched:
        on ArtifactError (missing, corrupted) ``dest`` is left as it was.
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.partial")
        try:
            with tmp.open("wb") as fh:
                for chunk in checked(self.chunks(sha256, run_id=run_id, path=path), sha256, run_id=run_id,
                                     path=path):
                    fh.write(chunk)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest


def checked(chunks: Iterator[bytes], sha256: str, *, run_id: str | None = None, path: str | None = None,
            hold_last: bool = False) -> Iterator[bytes]:
    """Pass ``chunks`` through, hashing them; raise ArtifactError at the end if they are not ``sha256``.

    ``hold_last``: keep the last chunk back until the check passed, so that a reader of a stream that
    stops with the error (an HTTP response) never receives the whole of a wrong file.
    """
    h = hashlib.sha256()
    held: bytes | None = None
    for chunk in chunks:
        h.update(chunk)
        if hold_last:
            if held is not None:
                yield held
            held = bytes(chunk)
        else:
            yield chunk
    actual = h.hexdigest()
    if actual != sha256:
        raise ArtifactError(f"{_what(run_id, path)}: the stored bytes are corrupted: expected sha256 {sha256}, "
                            f"got {actual}", run_id=run_id, path=path, expected=sha256, actual=actual)
    if held is not None:
        yield held


# -- internals ------------------------------------------------------------------------------

_LOCAL_CREDENTIALS = {"access_key_id": "local", "secret_access_key": "local", "region": "us-east-1"}


def _s3(bucket: str, prefix: str | None, config: dict[str, str]) -> Any:
    from obstore.store import S3Store

    config.setdefault("region", "us-east-1")
    client = {"allow_http": True} if config.get("endpoint", "").startswith("http://") else None
    try:
        return S3Store(bucket, prefix=prefix, config=config, client_options=client)
    except Exception as exc:  # obstore's configuration errors
        raise ConfigError(f"MODELOG_ARTIFACT_URI: cannot configure s3://{bucket}: {exc}") from exc


def _what(run_id: str | None, path: str | None) -> str:
    if run_id and path:
        return f"artifact {path!r} of run {run_id}"
    return f"artifact {path!r}" if path else "artifact"


def _check_same(path: Path, sha256: str, size: int, actual: str, actual_size: int) -> None:
    if actual != sha256 or actual_size != size:
        raise ArtifactError(f"{path}: the file changed after it was logged (sha256 {sha256}, {size} bytes; now "
                            f"{actual}, {actual_size} bytes): not stored. Write a new file for new content, or "
                            "wait for the upload (run.flush()) before changing it", path=str(path),
                            expected=sha256, actual=actual)


def _verified_chunks(path: Path, sha256: str, size: int, progress: Callable[[int], None] | None) -> Iterator[bytes]:
    """The file's bytes, ``READ_SIZE`` at a time; raising at the end (which aborts the multipart upload)
    if they were not ``sha256``."""
    h = hashlib.sha256()
    n = 0
    with path.open("rb") as fh:
        while chunk := fh.read(READ_SIZE):
            h.update(chunk)
            n += len(chunk)
            if progress is not None:
                progress(n)
            yield chunk
    _check_same(path, sha256, size, h.hexdigest(), n)


def _stream(result: Any, address: str, what: str, run_id: str | None, path: str | None,
            sha256: str) -> Iterator[bytes]:
    try:
        for chunk in result.stream(min_chunk_size=READ_SIZE):
            yield bytes(chunk)
    except Exception as exc:  # obstore's errors mid-stream
        raise ArtifactError(f"{what}: reading {address} failed: {exc}", run_id=run_id, path=path,
                            expected=sha256) from exc
