"""MLflow's artifact proxy (``/api/2.0/mlflow-artifacts``) onto modelog's artifact store.

A run's ``artifact_uri`` is ``mlflow-artifacts:/<experiment_id>/<run_id>/artifacts``; the client turns it
into ``/api/2.0/mlflow-artifacts/artifacts/<experiment_id>/<run_id>/artifacts/<path>`` and

* ``PUT`` uploads a file: the server streams the body to a temporary file while hashing it, stores it
  content-addressed (each content once) like ``run.log_artifact``, publishes ``ArtifactLogged`` with the
  content address (actor: the token's principal) and answers once both are done;
* ``GET`` downloads it, streamed from the store and checked against its sha256 (the REST API's route);
* ``GET ?path=<experiment_id>/<run_id>/artifacts/<dir>`` lists a directory.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from modelog.server.api import tracking as _tracking
from modelog.server.auth import Principal, requires
from modelog.server.uploads import received, store_and_log
from modelog.server.mlflow.common import MlflowJSON, client, invalid, missing, projected, refused, views
from modelog.wire import rules as _rules
from modelog.wire.errors import ValidationError

router = APIRouter(default_response_class=MlflowJSON, include_in_schema=False)


def split(path: str) -> tuple[str, str]:
    """(run_id, path inside the run) of ``<experiment_id>/<run_id>/artifacts[/<path>]``."""
    parts = path.strip("/").split("/", 3)
    if len(parts) < 3 or parts[2] != "artifacts":
        raise invalid(f"artifact path {path!r}: expected <experiment_id>/<run_id>/artifacts/<path> "
                      "(modelog stores artifacts per run)")
    run_id, rel = parts[1], parts[3] if len(parts) > 3 else ""
    try:
        _rules.ident(run_id)
    except ValueError:
        raise invalid(f"artifact path {path!r}: {run_id!r} is not a run id") from None
    return run_id, rel


def _run(request: Request, run_id: str) -> None:
    if views(request).one("SELECT 1 AS x FROM runs WHERE run_id = ?", [run_id]) is None:
        raise missing(f"Run '{run_id}' not found")


def listing(request: Request, run_id: str, directory: str) -> list[dict[str, Any]]:
    """The files and directories directly under ``directory`` of the run, as MLflow's FileInfo dicts."""
    prefix = directory.strip("/") + "/" if directory.strip("/") else ""
    rows = views(request).rows("SELECT path, size_bytes FROM artifacts WHERE run_id = ? AND starts_with(path, ?) "
                               "ORDER BY path", [run_id, prefix])
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        rest = r["path"][len(prefix):]
        head, sep, _ = rest.partition("/")
        if sep:
            out.setdefault(head, {"path": head, "is_dir": True})
        else:
            out[head] = {"path": head, "is_dir": False, "file_size": r["size_bytes"]}
    if not out and prefix:  # a file's own path: MLflow lists it as itself
        row = views(request).one("SELECT path, size_bytes FROM artifacts WHERE run_id = ? AND path = ?",
                                 [run_id, directory.strip("/")])
        if row is not None:
            name = row["path"].rsplit("/", 1)[-1]
            return [{"path": name, "is_dir": False, "file_size": row["size_bytes"]}]
    return list(out.values())


@router.get("/artifacts")
def list_artifacts(request: Request, path: str = "", principal: Principal = requires("read", basic=True)):
    run_id, rel = split(path)
    _run(request, run_id)
    return {"files": listing(request, run_id, rel)}


@router.get("/artifacts/{path:path}")
def download(request: Request, path: str, principal: Principal = requires("read", basic=True)):
    run_id, rel = split(path)
    if not rel:
        raise invalid("name a file to download")
    return _tracking.artifact(request, run_id, rel, principal)


@router.put("/artifacts/{path:path}")
async def upload(request: Request, path: str, principal: Principal = requires("write", basic=True)):
    run_id, rel = split(path)
    try:
        _rules.stored_artifact_path(rel)
    except ValueError as exc:
        raise ValidationError("path", rel, str(exc)) from None
    await run_in_threadpool(_run, request, run_id)
    uri = "mlflow-artifacts:/" + quote(path.strip("/"), safe="/")
    async with received(request, rel) as body:
        await run_in_threadpool(lambda: store_and_log(client(request, principal), run_id, rel, uri, body))
    await run_in_threadpool(projected, request, principal)
    return {}


@router.delete("/artifacts/{path:path}")
def delete(request: Request, path: str, principal: Principal = requires("write", basic=True)):
    raise refused("deleting an artifact", "stored artifacts are content-addressed and referenced by the log")


@router.api_route("/mpu/{action:path}", methods=["POST"])
def multipart(request: Request, action: str, principal: Principal = requires("write", basic=True)):
    raise refused("multipart upload through the proxy (MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD)",
                  "send each file in one PUT: the server streams it to the store in parts itself")
