"""Artifact bytes uploaded through the server (the API's upload route and the MLflow gateway's): the body
streamed to a temporary file while hashed, never held in memory, then stored content-addressed in the
server's artifact store and logged as ``ArtifactLogged`` by the uploading principal."""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool


@dataclass(frozen=True)
class Received:
    file: Path
    sha256: str
    size: int
    media_type: str


@contextlib.asynccontextmanager
async def received(request: Request, path: str) -> AsyncIterator[Received]:
    """The request body in a temporary file (removed on exit), with its sha256, size and media type
    (the request's Content-Type, else guessed from ``path``)."""
    media = (request.headers.get("content-type") or "").split(";")[0].strip() or \
        mimetypes.guess_type(path)[0] or "application/octet-stream"
    fd, name = tempfile.mkstemp(prefix="modelog-upload-")
    tmp = Path(name)
    try:
        h, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.stream():
                h.update(chunk)
                size += len(chunk)
                await run_in_threadpool(fh.write, chunk)
        yield Received(tmp, h.hexdigest(), size, media)
    finally:
        tmp.unlink(missing_ok=True)


def store_and_log(client, run_id: str, path: str, uri: str, body: Received) -> str:
    """Store the bytes (each content once) and publish ``ArtifactLogged`` with their content address;
    returns the address. ConfigError when the server has no artifact store."""
    address = client.uploads.store.put_file(body.file, body.sha256, body.size)
    client.publish("ArtifactLogged", "run", run_id, run_id=run_id, path=path, uri=uri, sha256=body.sha256,
                   size_bytes=body.size, media_type=body.media_type, content_address=address)
    client.flush()
    return address
