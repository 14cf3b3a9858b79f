"""Artifact bytes through a modelog server (``MODELOG_URL``), for jobs that reach only its API.

With ``MODELOG_URL`` set and no ``MODELOG_ARTIFACT_URI`` of their own, ``run.log_artifact(path)`` uploads the
file with ``PUT /api/v1/runs/<run_id>/artifacts/<path>``: the body streamed from the file (never read whole
into memory), the sha256 computed at log time in a ``Repr-Digest`` header. The server hashes what arrives,
refuses bytes that are not that sha256, stores them content-addressed in its artifact store and publishes
``ArtifactLogged`` (actor: the token's principal) before it answers. So, as with a direct store, an event
with a content address always names stored bytes, and ``end_run`` waits for the uploads
(:class:`modelog.sdk.uploads.Uploads`) under the same ``DeliveryError`` rule.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from modelog.wire.errors import ArtifactError

if TYPE_CHECKING:
    from modelog.sdk.uploads import Upload
    from modelog.wire.settings import Settings

READ_SIZE = 1 << 20


class _Reading:
    """A file object for urllib's streamed body that reports progress (bytes sent so far)."""

    def __init__(self, fh, progress: Callable[[int], None] | None) -> None:
        self._fh, self._progress, self._done, self._told = fh, progress, 0, 0

    def read(self, n: int = -1) -> bytes:
        chunk = self._fh.read(READ_SIZE if n is None or n < 0 else min(n, READ_SIZE))
        self._done += len(chunk)
        if self._progress is not None and (self._done - self._told >= READ_SIZE or not chunk):
            self._told = self._done
            self._progress(self._done)
        return chunk


class ServerArtifacts:
    """The artifact store as seen through a modelog server. ``publishes``: the server logs the event."""

    publishes = True

    def __init__(self, settings: Settings, timeout: float = 300.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._root: str | None = None
        self._lock = threading.Lock()

    def _url(self, path: str) -> str:
        return self.settings.url.rstrip("/") + "/api/v1" + path  # type: ignore[union-attr]

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.token}", "Accept": "application/json"}

    @property
    def root(self) -> str:
        """The server's store root (``GET /api/v1/artifact-store``, asked once)."""
        with self._lock:
            if self._root is None:
                req = urllib.request.Request(self._url("/artifact-store"), headers=self._headers())
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 -- MODELOG_URL
                        self._root = json.loads(resp.read())["root"]
                except (OSError, ValueError, KeyError) as exc:
                    raise ArtifactError(f"{self.settings.url}: cannot ask the server for its artifact store: "
                                        f"{_detail(exc)}") from exc
            return self._root

    def address(self, sha256: str) -> str:
        return f"{self.root}/sha256/{sha256}"

    def upload(self, up: Upload, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """PUT the file; the server checks, stores and logs it. Returns its answer (with ``content_address``).
        Raises ArtifactError with the server's reason."""
        path = quote(up.path, safe="/")
        url = self._url(f"/runs/{quote(up.run_id, safe='')}/artifacts/{path}") + "?" + urlencode({"uri": up.uri})
        digest = base64.b64encode(bytes.fromhex(up.sha256)).decode()
        headers = {**self._headers(), "Content-Type": up.media_type, "Content-Length": str(up.size_bytes),
                   "Repr-Digest": f"sha-256=:{digest}:"}
        try:
            with Path(up.file).open("rb") as fh:
                req = urllib.request.Request(url, data=_Reading(fh, progress), headers=headers, method="PUT")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 -- MODELOG_URL
                    return json.loads(resp.read())
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"uploading {up.file} to {self.settings.url} failed: {_detail(exc)}",
                                run_id=up.run_id, path=up.path, expected=up.sha256) from exc


def _detail(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        with exc:
            raw = exc.read()
        try:
            return f"HTTP {exc.code}: {json.loads(raw).get('detail')}"
        except (ValueError, AttributeError):
            return f"HTTP {exc.code}: {raw[:300].decode(errors='replace')}"
    return str(exc)
